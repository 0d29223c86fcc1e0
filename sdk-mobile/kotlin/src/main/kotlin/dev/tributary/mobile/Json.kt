package dev.tributary.mobile

import org.json.JSONObject

/** Properties, traits and context cross the FFI as JSON objects. */
internal object Json {
    /**
     * Encodes a map of JSON-like values (strings, numbers, booleans, null, maps, lists, arrays);
     * other values become their `toString()`.
     */
    fun encode(map: Map<String, Any?>): String {
        if (map.isEmpty()) return "{}"
        val json = JSONObject()
        for ((key, value) in map) json.put(key, wrap(value))
        return json.toString()
    }

    private fun wrap(value: Any?): Any = when (value) {
        null -> JSONObject.NULL
        is Map<*, *> -> JSONObject().also { json ->
            for ((key, inner) in value) json.put(key.toString(), wrap(inner))
        }
        is Iterable<*> -> org.json.JSONArray().also { array -> value.forEach { array.put(wrap(it)) } }
        is Array<*> -> org.json.JSONArray().also { array -> value.forEach { array.put(wrap(it)) } }
        is Boolean, is String -> value
        is Double -> if (value.isFinite()) value else value.toString()
        is Float -> if (value.isFinite()) value.toDouble() else value.toString()
        is Number -> value
        is Char -> value.toString()
        else -> value.toString()
    }
}

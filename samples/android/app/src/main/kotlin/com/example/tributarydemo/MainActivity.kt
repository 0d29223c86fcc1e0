package com.example.tributarydemo

import android.app.Activity
import android.os.Bundle
import android.widget.Button
import android.widget.LinearLayout

/** Two buttons: track an event, identify a user. Lifecycle events are tracked by the library. */
class MainActivity : Activity() {
    private val tributary get() = (application as DemoApplication).tributary

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val layout = LinearLayout(this).apply { orientation = LinearLayout.VERTICAL }
        layout.addView(Button(this).apply {
            text = "Track button_click"
            setOnClickListener { tributary?.track("button_click", mapOf("button" to "demo")) }
        })
        layout.addView(Button(this).apply {
            text = "Identify user-42"
            setOnClickListener { tributary?.identify("user-42", mapOf("plan" to "pro")) }
        })
        setContentView(layout)
    }

    override fun onResume() {
        super.onResume()
        tributary?.screen("Main")
    }
}

// Parses Swift files with tree-sitter-swift and fails on any syntax error, naming the file,
// line and column of each. Usage: node check.js FILE.swift...
//
// tree-sitter-swift 0.7.1 lacks two constructs of valid Swift that uniffi's generated bindings
// use; before parsing, exactly these spans are blanked with spaces (so lines and columns hold):
// - `#if swift(>=5.8)` and `#endif` lines around a lone `@_documentation(...)` attribute line
//   (a compiler directive between an attribute and its declaration);
// - the `nonisolated(unsafe)` modifier (Swift 5.10);
// - a closure whose body is the empty tuple, `{ () }` (uniffi's `writeReturn` of a callback
//   method returning nothing): the `()` is blanked, leaving an empty closure.
// Everything else must parse as it is.
"use strict";
const fs = require("fs");
const Parser = require("tree-sitter");
const Swift = require("tree-sitter-swift");

const parser = new Parser();
parser.setLanguage(Swift);

function problems(node, found) {
    if (node.type === "ERROR" || node.isMissing) {
        found.push(node);
        return found;
    }
    if (node.hasError) {
        for (const child of node.children) problems(child, found);
    }
    return found;
}

let failed = 0;
const files = process.argv.slice(2);
if (files.length === 0) {
    console.error("usage: node check.js FILE.swift...");
    process.exit(2);
}
const blank = (text) => text.replace(/[^\n]/g, " ");

function maskGrammarGaps(source) {
    return source
        .replace(
            /^([ \t]*#if swift\(>=5\.8\)[ \t]*)\n([ \t]*@_documentation\([^)\n]*\)[ \t]*)\n([ \t]*#endif[ \t]*)$/gm,
            (_, open, attribute, close) => `${blank(open)}\n${attribute}\n${blank(close)}`,
        )
        .replace(/\bnonisolated\(unsafe\)/g, blank)
        .replace(/\{ \(\) \}/g, "{    }");
}

for (const file of files) {
    const source = maskGrammarGaps(fs.readFileSync(file, "utf8"));
    // The default 32 KiB buffer would split the generated bindings' long source.
    const tree = parser.parse(source, null, { bufferSize: source.length * 2 + 1024 });
    const found = problems(tree.rootNode, []);
    for (const node of found) {
        const { row, column } = node.startPosition;
        const what = node.isMissing ? `missing ${node.type}` : "syntax error";
        console.error(`${file}:${row + 1}:${column + 1}: ${what} near ${JSON.stringify(node.text.slice(0, 40))}`);
    }
    if (found.length > 0) failed += 1;
}
console.log(`${files.length - failed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);

//! Where things are in a JSON text: the line and column of each top-level array element and of
//! the values of its keys. serde reports positions only for syntax errors; rule errors found after
//! parsing (an unknown destination) need these.

/// A 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Position {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// The positions of one top-level element: its opening character, and each key's value.
#[derive(Debug, Clone, Default)]
pub(crate) struct ElementPositions {
    pub(crate) start: Position,
    pub(crate) keys: Vec<(String, Position)>,
}

impl ElementPositions {
    /// Where the value of `key` starts, else where the element starts.
    pub(crate) fn of(&self, key: &str) -> Position {
        self.keys
            .iter()
            .find(|(name, _)| name == key)
            .map_or(self.start, |(_, position)| *position)
    }
}

/// Scans a JSON text that has already parsed (so it is well formed) for the positions of the
/// elements of its top-level array, and of the keys directly inside each element.
pub(crate) fn top_level_elements(text: &str) -> Vec<ElementPositions> {
    let mut elements = Vec::new();
    let mut depth = 0usize;
    let (mut line, mut column) = (1usize, 0usize);
    let mut characters = text.chars().peekable();
    let mut pending_key: Option<String> = None;
    while let Some(character) = characters.next() {
        column += 1;
        let here = Position { line, column };
        match character {
            '\n' => {
                line += 1;
                column = 0;
            }
            '"' => {
                let mut string = String::new();
                while let Some(inner) = characters.next() {
                    column += 1;
                    match inner {
                        '\\' => {
                            if let Some(escaped) = characters.next() {
                                column += 1;
                                string.push(escaped);
                            }
                        }
                        '"' => break,
                        other => string.push(other),
                    }
                }
                if depth == 2 {
                    match pending_key.take() {
                        Some(key) => record_key(&mut elements, key, here),
                        None => pending_key = Some(string),
                    }
                }
            }
            '{' | '[' => {
                if depth == 1 {
                    elements.push(ElementPositions {
                        start: here,
                        keys: Vec::new(),
                    });
                } else if depth == 2
                    && let Some(key) = pending_key.take()
                {
                    record_key(&mut elements, key, here);
                }
                depth += 1;
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            ':' | ',' | ' ' | '\t' | '\r' => {}
            _ => {
                // A number, true, false or null (the caller parsed the text, so the top-level
                // elements are objects and scalars only appear as values).
                if depth == 2
                    && let Some(key) = pending_key.take()
                {
                    record_key(&mut elements, key, here);
                }
                while let Some(next) = characters.peek() {
                    if matches!(next, ',' | '}' | ']' | ' ' | '\n' | '\t' | '\r') {
                        break;
                    }
                    characters.next();
                    column += 1;
                }
            }
        }
    }
    elements
}

fn record_key(elements: &mut [ElementPositions], key: String, position: Position) {
    if let Some(element) = elements.last_mut() {
        element.keys.push((key, position));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_elements_and_key_values() {
        let text = "[\n {\n   \"a\": \"x\",\n   \"b\": [\"y\"]\n },\n {\"a\": 5}\n]";
        let elements = top_level_elements(text);
        assert_eq!(elements.len(), 2);
        assert_eq!(elements[0].start, Position { line: 2, column: 2 });
        assert_eq!(elements[0].of("a"), Position { line: 3, column: 9 });
        assert_eq!(elements[0].of("b"), Position { line: 4, column: 9 });
        assert_eq!(elements[1].of("a"), Position { line: 6, column: 8 });
        assert_eq!(elements[1].of("missing"), Position { line: 6, column: 2 });
    }

    #[test]
    fn strings_with_brackets_and_escapes_do_not_confuse_it() {
        let text = r#"[{"a": "]}\"{", "b": "é"}, {"a": "z"}]"#;
        let elements = top_level_elements(text);
        assert_eq!(elements.len(), 2);
        assert_eq!(
            elements[0].of("b"),
            Position {
                line: 1,
                column: 22
            }
        );
        assert_eq!(
            elements[1].of("a"),
            Position {
                line: 1,
                column: 34
            }
        );
    }
}

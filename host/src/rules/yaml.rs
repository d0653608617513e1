//! A YAML document as a tree whose every node knows its line and column.
//!
//! Rule file errors name positions (`5:15: group "g", rule 1, ...`), as
//! promtool's do, and serde_yaml keeps no spans, so rule files are read into
//! this tree with yaml-rust2's event parser and decoded by hand.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML node with its 1-based line and column (Go yaml.v3's numbering).
#[derive(Clone, Debug)]
pub struct Node {
    pub kind: Kind,
    pub line: usize,
    pub col: usize,
}

#[derive(Clone, Debug)]
pub enum Kind {
    /// A scalar as written; `plain` is false for quoted and block scalars.
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// `null`, `~` or nothing at all, as YAML spells an absent value.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, plain: true }
            if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// Go yaml's short tag, for "cannot unmarshal !!seq into string" messages.
    pub fn tag(&self) -> &'static str {
        match &self.kind {
            Kind::Seq(_) => "!!seq",
            Kind::Map(_) => "!!map",
            Kind::Scalar { plain: false, .. } => "!!str",
            Kind::Scalar { value, .. } => {
                if self.is_null() {
                    "!!null"
                } else if value.parse::<i64>().is_ok() {
                    "!!int"
                } else if value.parse::<f64>().is_ok() {
                    "!!float"
                } else if matches!(value.as_str(), "true" | "false" | "True" | "False") {
                    "!!bool"
                } else {
                    "!!str"
                }
            }
        }
    }

    pub fn pos(&self) -> (usize, usize) {
        (self.line, self.col)
    }
}

/// Parses the first document of `text`; `None` for an empty stream.
pub fn parse(text: &str) -> Result<Option<Node>, String> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| {
        let m = e.marker();
        format!("yaml: line {}: {}", m.line(), e.info())
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.documents.into_iter().next())
}

enum Frame {
    Seq(Node, usize),
    Map(Node, usize, Option<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    documents: Vec<Node>,
    error: Option<String>,
}

impl Builder {
    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Frame::Seq(seq, _)) => {
                if let Kind::Seq(items) = &mut seq.kind {
                    items.push(node);
                }
            }
            Some(Frame::Map(map, _, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    if let Kind::Map(entries) = &mut map.kind {
                        entries.push((k, node));
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let (line, col) = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(value, style, anchor, _) => {
                let plain = matches!(style, TScalarStyle::Plain);
                self.push_value(
                    Node {
                        kind: Kind::Scalar { value, plain },
                        line,
                        col,
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(
                Node {
                    kind: Kind::Seq(Vec::new()),
                    line,
                    col,
                },
                anchor,
            )),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map(
                Node {
                    kind: Kind::Map(Vec::new()),
                    line,
                    col,
                },
                anchor,
                None,
            )),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq(node, anchor)) | Some(Frame::Map(node, anchor, _)) => {
                    self.push_value(node, anchor)
                }
                None => {}
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.push_value(node, 0),
                None => {
                    self.error
                        .get_or_insert(format!("yaml: line {line}: unknown anchor"));
                }
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_those_of_values() {
        let doc = parse("groups:\n  - name: g\n    rules:\n      - record: a\n        expr: up\n")
            .unwrap()
            .unwrap();
        let Kind::Map(top) = &doc.kind else { panic!() };
        let Kind::Seq(groups) = &top[0].1.kind else {
            panic!()
        };
        let Kind::Map(g) = &groups[0].kind else {
            panic!()
        };
        assert_eq!(g[0].0.pos(), (2, 5));
        let Kind::Seq(rules) = &g[1].1.kind else {
            panic!()
        };
        let Kind::Map(r) = &rules[0].kind else {
            panic!()
        };
        assert_eq!(r[0].1.pos(), (4, 17));
        assert_eq!(r[1].1.pos(), (5, 15));
    }

    #[test]
    fn aliases_and_first_document() {
        let doc = parse("a: &x [1, 2]\nb: *x\n---\nc: 1\n").unwrap().unwrap();
        let Kind::Map(top) = &doc.kind else { panic!() };
        assert_eq!(top.len(), 2);
        assert!(matches!(&top[1].1.kind, Kind::Seq(v) if v.len() == 2));
        assert!(parse("").unwrap().is_none());
        assert!(parse("a: [").is_err());
    }
}

//! Unit tests of the promqltest runner's modules (the runner itself has its
//! own `main`, so its `#[test]`s run from here).

#[path = "promqltest/compare.rs"]
#[allow(dead_code)]
mod compare;
#[path = "promqltest/parse.rs"]
#[allow(dead_code)]
mod parse;

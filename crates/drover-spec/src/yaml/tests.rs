use super::*;

fn check_err(text: &str, line: u32, fragment: &str) {
    let (pos, message) = parse(text).expect_err("should be refused");
    assert_eq!(pos.line, line, "{message}");
    assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
}

#[test]
fn positions_are_one_based() {
    let node = parse("a: 1\nb:\n  - x\n").expect("valid");
    let Kind::Map(entries) = node.kind else {
        panic!("not a map")
    };
    assert_eq!(entries[1].0.pos, Pos { line: 2, column: 1 });
    let Kind::Seq(items) = &entries[1].1.kind else {
        panic!("not a seq")
    };
    assert_eq!(items[0].pos, Pos { line: 3, column: 5 });
}

#[test]
fn hostile_and_broken_input_is_refused() {
    check_err("a: [1\n", 1, "unclosed");
    check_err("\u{0}garbage", 1, "unexpected character");
    check_err(&"[".repeat(100_000), 1, "nesting is deeper than 32 levels");
    let block: String = (0..3000)
        .map(|i| format!("{}- \n", " ".repeat(i * 2)))
        .collect();
    check_err(&block, 33, "nesting is deeper than 32 levels");
    check_err("a: 1\n---\nb: 2\n", 3, "one YAML document");
    let bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n";
    let (_, message) = parse(bomb).expect_err("alias bomb");
    assert!(message.contains("alias bomb"), "{message}");
}

#[test]
fn duplicate_keys_are_found_with_the_path_of_their_mapping() {
    let tree = parse("a: 1\nb:\n  - { x: 1, y: 2, x: 3 }\na: 4\n").expect("parsed");
    let found = duplicates(&tree);
    assert_eq!(
        found,
        [
            (
                Pos {
                    line: 3,
                    column: 19
                },
                "b[0]".to_string(),
                "x".to_string(),
                3
            ),
            (
                Pos { line: 4, column: 1 },
                String::new(),
                "a".to_string(),
                1
            ),
        ]
    );
}

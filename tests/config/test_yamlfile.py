"""Config files a user got wrong in ways YAML itself hides: bytes that are not UTF-8, a key written twice, nesting
thousands deep, aliases that expand without bound, and unknown keys. Each is one `FILE:LINE: ...` error, in every
kind of config file, and the hint on an unknown key lists the fields of the section it is in."""

from __future__ import annotations

import pytest

from rlaif.config.feedback import load_feedback_config
from rlaif.config.judge import load_judge_config
from rlaif.config.train import load_train_config, parse_overrides
from rlaif.config.yamlfile import ConfigFileError, read_yaml
from rlaif.constitution import load_constitution

CONSTITUTION = "name: x\nversion: '1'\nprinciples:\n  - id: a\n    text: Which is better?\n"
DPO = "method: dpo\noutput_dir: o\nmodel: {type: tiny}\nfeedback:\n  source: ai\n  ai: x\n"
LOADERS = {
    "constitution": (load_constitution, CONSTITUTION),
    "judge": (load_judge_config, "backend: python\nfunction: tests.judge_fns:prefers_polite\n"),
    "feedback": (load_feedback_config, "source: ai\nai: labels.jsonl\n"),
    "train": (lambda f: load_train_config(f, "dpo"), DPO),
}


def errors(load, path) -> list[str]:
    with pytest.raises(ConfigFileError) as e:
        load(path)
    return e.value.errors


@pytest.mark.parametrize("kind", LOADERS)
def test_a_duplicate_key_is_an_error_at_its_second_line_in_every_config(tmp_path, kind):
    load, text = LOADERS[kind]
    f = tmp_path / f"{kind}.yaml"
    f.write_text(text)
    load(f)  # the file as written is fine
    first_key = text.split(":")[0]
    f.write_text(text + f"{first_key}: again\n")
    line = text.count("\n") + 1
    assert errors(load, f) == [
        f"{f}:{line}: {first_key}: duplicate key (first on line 1); YAML would keep only this one and drop the first"
    ]


def test_a_second_principles_block_is_not_silently_dropped(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(CONSTITUTION + "principles:\n  - id: b\n    text: Which is safer?\n")
    assert errors(load_constitution, f) == [
        f"{f}:6: principles: duplicate key (first on line 3); YAML would keep only this one and drop the first"
    ]
    f.write_text(CONSTITUTION + "    id: again\n")  # nested: named by its path
    assert errors(load_constitution, f)[0].startswith(f"{f}:6: principles[0].id: duplicate key (first on line 4)")
    # a merge key (`<<`) and the keys it brings in are not duplicates
    f.write_text(
        "base: &b\n  text: Which?\n  weight: 2\nname: x\nversion: '1'\nprinciples:\n  - <<: *b\n"
        "    id: a\n    weight: 3\n"
    )
    with pytest.raises(ConfigFileError, match="base: unknown field"):
        load_constitution(f)


def test_bytes_that_are_not_utf8_are_named_with_their_line(tmp_path):
    f = tmp_path / "latin1.yaml"
    f.write_bytes(CONSTITUTION.replace("better", "b\xe9tter").encode("latin-1"))
    assert errors(load_constitution, f) == [f"{f}:5: not UTF-8 text: byte 0xe9 at column 21; save the file as UTF-8"]
    f.write_bytes(CONSTITUTION.encode("utf-16"))
    assert "(it looks like UTF-16)" in errors(load_constitution, f)[0]
    f.write_bytes(b"\xef\xbb\xbf" + CONSTITUTION.encode())  # a UTF-8 byte-order mark is fine
    assert load_constitution(f).name == "x"
    f.write_text(CONSTITUTION + "description: a\x00b\n")
    assert errors(load_constitution, f) == [
        f"{f}:6: yaml: character #x0000 is not allowed in YAML (special characters are not allowed)"
    ]


@pytest.mark.parametrize(
    "nested",
    ["[" * 5000 + "]" * 5000, "{a: " * 5000 + "1" + "}" * 5000, "".join(f"\n{'  ' * i}- " for i in range(2000)) + "x"],
)
def test_nesting_thousands_deep_is_an_error_not_a_recursion_error(tmp_path, nested):
    f = tmp_path / "deep.yaml"
    f.write_text("name: x\nprinciples: " + nested + "\n")
    (line,) = errors(load_constitution, f)
    assert line.startswith(f"{f}:") and line.endswith("yaml: nested deeper than 100 levels")


def test_aliases_that_expand_without_bound_are_refused(tmp_path):
    f = tmp_path / "bomb.yaml"
    rows = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    f.write_text("\n".join(rows) + "\n")
    assert errors(read_yaml, f) == [f"{f}:6: yaml: aliases expand this to over 1,000,000 values"]
    f.write_text("a: &a [*a]\n")
    assert errors(read_yaml, f) == [
        f"{f}:1: yaml: an alias refers to the node that contains it (the data would be infinite)"
    ]
    f.write_text("shared: &s {id: a, text: Which}\nname: x\nversion: '1'\nprinciples: [*s]\n")
    assert read_yaml(f)[0]["principles"] == [{"id": "a", "text": "Which"}]  # ordinary aliases still work


def test_unknown_keys_are_hinted_with_the_fields_of_their_own_section(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(CONSTITUTION + "    wieght: 2\n")
    assert errors(load_constitution, f) == [
        f"{f}:6: principles[0].wieght: unknown field; did you mean 'weight'? "
        "(fields here: id, text, weight, invert, critique, revision, score_text)"
    ]
    f.write_text("backend: python\nfunction: tests.judge_fns:prefers_polite\nkwargz: {}\n")
    (line,) = errors(load_judge_config, f)
    assert line.startswith(f"{f}:3: kwargz: unknown field; did you mean 'kwargs'? (fields here: ")
    assert "constitution schema" not in line and "function" in line and "base_urls" not in line
    f.write_text(DPO + "model_:\n  type: tiny\n")
    (line,) = errors(lambda p: load_train_config(p, "dpo"), f)
    assert line.startswith(f"{f}:7: model_: unknown field; did you mean 'model'? (fields here: output_dir, ")
    f.write_text(DPO.replace("{type: tiny}", "{type: tiny, vocabb: [a]}"))
    assert errors(lambda p: load_train_config(p, "dpo"), f) == [
        f"{f}:3: model.vocabb: unknown field; did you mean 'vocab'? (fields here: type, hidden_size, "
        "intermediate_size, num_layers, num_heads, num_kv_heads, max_positions, vocab, seed)"
    ]
    f.write_text(DPO.replace("{type: tiny}", "{type: pretrained, path: m, revison: main}"))
    (line,) = errors(lambda p: load_train_config(p, "dpo"), f)
    assert line.startswith(f"{f}:3: model.revison: unknown field; did you mean 'revision'? (fields here: type, path")


def test_a_key_with_a_line_break_stays_on_one_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(CONSTITUTION + '"two\\nlines": 1\n')
    (line,) = errors(load_constitution, f)
    assert line.startswith(f'{f}:6: "two\\nlines": unknown field') and "\n" not in line


def test_override_values_are_read_with_the_same_checks():
    assert parse_overrides(["optim.betas=[0.9, 0.99]"]) == {"optim": {"betas": [0.9, 0.99]}}
    for bad, message in [
        ("optim.lr=[", "override 'optim.lr=[': yaml: expected the node content"),
        ("x={a: 1, a: 2}", "override 'x={a: 1, a: 2}': a: duplicate key"),
        ("x=" + "[" * 3000, "nested deeper than 100 levels"),
    ]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("{", r"\{")):
            parse_overrides([bad])

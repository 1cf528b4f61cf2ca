"""`make bench` in its smoke setting: it runs every section and writes the tables book/benchmark.md
includes (no timing is judged)."""

import re

import pytest
import torch
from transformers import BertConfig

from course import bench
from labutils.sentiment import MeanPooledBertForSequenceClassification
from labutils.sentiment.speed import mfu, non_embedding_params, spread, step_tokens_per_second


def tiny_model():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=40, num_labels=2)
    return MeanPooledBertForSequenceClassification(config)


def test_non_embedding_params_leave_out_every_embedding_table():
    model = tiny_model()
    tables = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    assert non_embedding_params(model) == sum(p.numel() for p in model.parameters()) - tables


def test_mfu_is_six_flops_per_parameter_and_token():
    assert mfu(tokens_per_second=1000, params=10_000, peak_flops=1.2e8) == pytest.approx(0.5)
    assert spread([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)


@pytest.mark.parametrize("kw", [{}, {"freeze_word_embeddings": True, "optimizer": "fused"}])
def test_step_rate_leaves_the_model_untouched(kw):
    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(1, 100, (4, 7))
    batches = [({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.tensor([0, 1, 0, 1]))]
    rates = step_tokens_per_second(model, batches, repeats=2, **kw)
    assert len(rates) == 2 and all(r > 0 for r in rates)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert model.bert.embeddings.word_embeddings.weight.requires_grad


def included_tables() -> list[str]:
    """The stems of book/_generated/benchmark/*.md that book/benchmark.md includes, in its order."""
    page = (bench.ROOT / "book" / "benchmark.md").read_text(encoding="utf-8")
    return re.findall(r"^```\{include\} _generated/benchmark/(\w+)\.md$", page, re.MULTILINE)


def test_the_page_includes_every_table_the_bench_writes_and_they_are_committed():
    assert included_tables() == ["machine", *bench.SECTIONS]
    assert bench.TABLES == bench.ROOT / "book" / "_generated" / "benchmark"
    assert sorted(p.stem for p in bench.TABLES.glob("*.md")) == sorted(included_tables())
    for stem in bench.SECTIONS:  # only the table: its heading and prose are the page's (translated)
        first = (bench.TABLES / f"{stem}.md").read_text(encoding="utf-8").splitlines()[0]
        assert first == "| measurement | median | range (min-max) | note |", stem


def test_smoke_bench_writes_the_tables_its_page_includes(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "SMOKE", True)
    assert bench.main(["--out", str(tmp_path)]) == 0
    default = set(included_tables()) - {"recipe"}  # recipe: only with --only (a test below)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{s}.md" for s in default)
    text = {p.stem: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.md")}
    assert not any(line.startswith("#") for t in text.values() for line in t.splitlines())  # tables only
    assert "CPU flags" in text["machine"] and "tables measured" not in text["machine"]
    for section, row in [("limits", "fp32 matmul"), ("limits", "memory copy"), ("training", "recipe, fp32"),
                         ("training", "recipe, bf16 autocast"), ("training", "MFU"),
                         ("trainer", "loop / Trainer"), ("inference", "ONNX Runtime int8"),
                         ("decoding", "bandwidth bound"), ("course", "06_bert_finetuning: last full run"),
                         ("course", "a learner's make setup"), ("course", "virtual environment")]:
        assert row in text[section], (section, row)


def test_a_partial_run_rewrites_only_its_tables_and_says_so(tmp_path):
    (tmp_path / "course.md").write_text("an earlier run's table\n", encoding="utf-8")
    table = bench.Table()
    table.add("limits", "fp32 matmul 8 x 8", "1 GFLOP/s")
    written = bench.write_tables(table, {"CPU": "test"}, 1.0, tmp_path, only=["limits"])
    assert sorted(p.name for p in written) == ["limits.md", "machine.md"]
    assert "| tables measured in this run | limits |" in (tmp_path / "machine.md").read_text(encoding="utf-8")
    assert (tmp_path / "course.md").read_text(encoding="utf-8") == "an earlier run's table\n"
    rows = (tmp_path / "limits.md").read_text(encoding="utf-8").splitlines()
    assert rows[2] == "| fp32 matmul 8 x 8 | 1 GFLOP/s |  |  |"


def test_only_the_course_table_leaves_the_limits_unmeasured_and_unwritten(tmp_path, monkeypatch):
    earlier = "the limits the training table was divided by\n"
    (tmp_path / "limits.md").write_text(earlier, encoding="utf-8")
    monkeypatch.setattr(bench, "SMOKE", True)
    monkeypatch.setattr(bench, "limits", lambda table: pytest.fail("the course table needs no limits"))
    assert bench.main(["--only", "course", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["course.md", "limits.md", "machine.md"]
    assert (tmp_path / "limits.md").read_text(encoding="utf-8") == earlier


def test_the_recipe_table_scores_each_variant_on_validation(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "SMOKE", True)
    assert bench.main(["--only", "recipe", "--out", str(tmp_path)]) == 0
    rows = (tmp_path / "recipe.md").read_text(encoding="utf-8").splitlines()[2:]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == [
        *(label for label, _ in bench.RECIPE_VARIANTS), "95% interval of one validation accuracy"]
    by_label = {row.split(" | ")[0].lstrip("| "): row for row in rows}
    one_run = r" valid \|  \| .*trained in [\d.]+ min: "  # one run each: no range; the time is in the note
    assert all(re.search(one_run, row) for row in rows[:-1] if "not run again" not in row)
    steps = {label: int(found.group(1)) for label, row in by_label.items()
             if (found := re.search(r"(\d+) steps", row))}
    assert steps["chapter 06's recipe (2 epochs)"] == 2 * steps["1 epoch"]
    fp32 = by_label["float32 (no autocast)"]  # trained in float32, or "auto" is float32 on this CPU already
    assert ("float32, epoch" in fp32) != ("the recipe's own precision here (float32)" in fp32)

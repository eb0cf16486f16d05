"""The Evaluate tab draws a run's saved results: scores of both models, the side-by-side sample table with
verdicts, and a benchmark's scores with their difference, in either language."""
from __future__ import annotations

from core.eval import results
from core.runs.folder import RunFolder
from webui.eval_tab import progress_html, results_html

DATASET = {"dataset": "identity_heldout", "samples": 1, "answered": 1, "match": "text",
           "models": {"base": {"loss": 2.5, "perplexity": 12.18, "exact_match": 0.0, "contains": 0.0, "rouge_l": 0.1},
                      "tuned": {"loss": 0.5, "perplexity": 1.65, "exact_match": 1.0, "contains": 1.0, "rouge_l": 1.0}},
           "verdicts": {"better": 1, "worse": 0, "same": 0},
           "rows": [{"prompt": "Tell me your name.", "reference": "My name is Ferret.", "base": "I am <SmolLM>.",
                     "tuned": "My name is Ferret.", "verdict": "better"}]}
BENCH = {"benchmark": "arithmetic_2digit", "documents": {"lorawb_arithmetic_2digit": 3},
         "rows": [{"metric": "lorawb_arithmetic_2digit/exact_match,last_number", "base": 0.25, "tuned": 0.5,
                   "difference": 0.25}]}


def test_saved_results_are_drawn_side_by_side(tmp_path):
    run = RunFolder(tmp_path / "run")
    assert "data-count='0'" in results_html(str(run.path), "en")
    results.save(run, "identity_heldout", DATASET)
    results.save(run, "lm-eval-arithmetic_2digit", BENCH)
    page = results_html(str(run.path), "en")
    assert "data-count='2'" in page and "Base answer" in page and "Tuned answer" in page
    assert "I am &lt;SmolLM&gt;." in page  # answers are escaped
    assert "data-verdict='better'" in page and "0.500" in page and "+0.250" in page and "2.500" in page
    zh = results_html(str(run.path), "zh")
    assert "微调模型的回答" in zh and "更好" in zh
    assert "data-state='idle'" in progress_html(None, "en")

"""The lm-eval adapter: scores held to `read_long` by hand, and lm-eval's own evaluation of a
tiny local task (no download). Tests that need lm-eval skip without it; the rest do not."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from nestgraph.errors import EXIT_ENVIRONMENT, EXIT_USAGE, EnvironmentProblem, UsageProblem
from nestgraph.evaluation import lm_eval_adapter as adapter
from nestgraph.evaluation.lm_eval_adapter import Scorer, scorer_from_args
from nestgraph.runtime.generate import sample
from nestgraph.runtime.reader import read_long
from nestgraph.runtime.stream import StreamState

TASKS = Path(__file__).resolve().parent / "lm_eval_task"
SEQ_LEN = 32
# Titans: an in-context memory of sequence lifetime and no stream level, so lanes are batched.
TINY = ("model.dim=16", "train.batch=2", f"train.seq_len={SEQ_LEN}", "levels.memory.every=8 tokens",
        "train.eval_batches=1", "train.eval_every=0", "train.log_every=1000",
        "data.max_bytes=60000", "train.threads=1")
PAIRS = [(b"def f(x):", b" return"), (b"", b"import"), (b"a", b"b"),
         (b"class P:\n    def __init__(self", b")")]  # each fits one window


def _train(root: Path, spec: str, overrides) -> Path:
    from nestgraph.runtime.program import load_program
    from nestgraph.runtime.train.loop import train
    from nestgraph.runtime.train.progress import SilentReporter
    from nestgraph.testing import compile_build

    program = load_program(compile_build(root / "build", spec, overrides))
    result = train(program, dict(program.train, steps=2), program.data, out=root / "runs",
                   reporter=SilentReporter())
    return result.run_dir


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A titans run trained two steps at tiny dims."""
    return _train(tmp_path_factory.mktemp("lmeval"), "titans", TINY)


@pytest.fixture(scope="module")
def scorer(lm_run):
    return Scorer(lm_run, carry=False, batch_size=1)


def _read(scorer: Scorer, data: bytes, *, carry: bool = False):
    return read_long(scorer.model, scorer.schedule, torch.tensor([list(data)]),
                     seq_len=SEQ_LEN, stream=scorer.stream, carry=carry)


def test_loglikelihood_is_minus_the_sum_of_the_continuations_losses(scorer):
    for (context, continuation), (logprob, greedy) in zip(PAIRS, scorer.loglikelihood(PAIRS),
                                                          strict=True):
        context = context or b"\n"
        out = _read(scorer, context + continuation)
        span = slice(len(context) - 1, len(context) + len(continuation) - 1)
        assert logprob == pytest.approx(-float(out.losses[0, span].sum()), rel=1e-6)
        assert greedy == (out.predictions[0, span].tolist() == list(continuation))


def test_the_greedy_continuation_is_greedy(scorer):
    context = b"def f(x):\n    "
    greedy = bytes(_read(scorer, context + b"\0").predictions[0, -1:].tolist())
    [(_, is_greedy)] = scorer.loglikelihood([(context, greedy)])
    [(_, other)] = scorer.loglikelihood([(context, bytes([(greedy[0] + 1) % 256]))])
    assert is_greedy and not other


@pytest.mark.parametrize("carry", [False, True])
def test_batched_scores_match_one_request_at_a_time(lm_run, carry):
    if carry and not _carrying_reader():
        pytest.skip("read_long(carry=True) is not implemented in this tree yet")
    pairs = [*PAIRS, (b"import os\n" * 6, b"import sys")]  # longer than a window
    one, batched = (Scorer(lm_run, carry=carry, batch_size=n) for n in (1, 3))
    assert batched.batch_size == 3
    for (a, g1), (b, g2) in zip(one.loglikelihood(pairs), batched.loglikelihood(pairs),
                                strict=True):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-5) and g1 == g2


def test_without_carry_the_model_sees_the_last_seq_len_bytes(scorer):
    context, continuation = bytes(range(40, 120)), b"xyz"
    keep = SEQ_LEN + 1 - len(continuation)
    [(whole, _)] = scorer.loglikelihood([(context, continuation)])
    [(last, _)] = scorer.loglikelihood([(context[-keep:], continuation)])
    [(shorter, _)] = scorer.loglikelihood([(context[-keep + 1:], continuation)])
    assert whole == pytest.approx(last, rel=1e-6) and whole != pytest.approx(shorter, rel=1e-6)


def test_rolling_scores_every_byte_once(scorer):
    text = b"for i in range(10):\n    print(i)\n" * 3
    pieces = scorer.rolling_pairs(text)
    assert b"".join(cont for _, cont in pieces) == text
    assert all(len(cont) <= SEQ_LEN for _, cont in pieces)
    [total] = scorer.loglikelihood_rolling([text])
    assert total == pytest.approx(sum(lp for lp, _ in scorer.loglikelihood(pieces)), rel=1e-6)
    short = text[:SEQ_LEN]  # one window: the losses of reading it after a newline
    [one] = scorer.loglikelihood_rolling([short])
    assert one == pytest.approx(-float(_read(scorer, b"\n" + short).losses.sum()), rel=1e-6)


def test_generation_is_greedy_sampling(lm_run, scorer):
    contexts = [b"def ", b"import os\nimport ", b"x" * 50, b""]
    batched = Scorer(lm_run, carry=False, batch_size=3)
    got = batched.generate(contexts, [[]] * len(contexts), max_bytes=4)
    for context, text in zip(contexts, got, strict=True):
        assert text == sample(scorer.model, scorer.schedule, scorer.stream, context, tokens=4,
                              seq_len=SEQ_LEN, temperature=0, threads=1)


def test_generation_stops_before_a_stop_string(scorer):
    [free] = scorer.generate([b"def "], [[]], max_bytes=6)
    stop = free[2:4]
    [cut] = scorer.generate([b"def "], [[stop]], max_bytes=6)
    assert cut == free[:free.find(stop)]
    assert scorer.generate([b"def "], [[]], max_bytes=0) == [b""]
    assert adapter._cut(b"abcabc", [b"c", b"b"]) == b"a" and adapter._cut(b"abc", [b"z"]) is None


def _carrying_reader() -> bool:
    try:
        read_long(torch.nn.Identity(), (), torch.zeros(1, 2, dtype=torch.long), seq_len=1,
                  stream=StreamState(), carry=True)
    except NotImplementedError:
        return False
    except Exception:  # noqa: BLE001 - an Identity is no model: the stub is gone
        return True
    return True


def test_with_carry_a_long_context_is_read_once(lm_run):
    if not _carrying_reader():
        pytest.skip("read_long(carry=True) is not implemented in this tree yet")
    carried = Scorer(lm_run, carry=True, batch_size=2)
    context, continuation = b"def f(x):\n    return x\n" * 4, b"def"
    [(logprob, _)] = carried.loglikelihood([(context, continuation)])
    out = _read(carried, context + continuation, carry=True)
    assert logprob == pytest.approx(-float(out.losses[0, len(context) - 1:].sum()), rel=1e-6)


def test_a_stream_level_reads_one_request_at_a_time_from_the_checkpoint(tmp_path):
    run = _train(tmp_path, "cms", (*TINY[:3], "levels.cms_fast.every=8 tokens",
                                   "levels.cms_mid.every=16 tokens",
                                   "levels.cms_slow.every=64 tokens", *TINY[4:]))
    learning = Scorer(run, carry=False, learn_stream=True, batch_size=4)
    assert learning.batch_size == 1  # cms_slow's state is shared by the lanes of a batch
    before = {k: v.clone() for k, v in learning.stream.accum.items()}
    first = learning.loglikelihood(PAIRS)
    assert learning.loglikelihood(PAIRS[::-1])[::-1] == first  # the order changes nothing
    assert all(torch.equal(before[k], v) for k, v in learning.stream.accum.items())


def test_model_arguments_are_checked(lm_run, tmp_path):
    with pytest.raises(UsageProblem, match="unknown model argument.*pretrained"):
        scorer_from_args(run=lm_run, pretrained="gpt2")
    with pytest.raises(UsageProblem, match="needs a run folder"):
        scorer_from_args()
    with pytest.raises(UsageProblem, match="not true or false"):
        scorer_from_args(run=lm_run, carry="maybe")
    with pytest.raises(UsageProblem, match="not a run folder"):
        scorer_from_args(run=tmp_path)
    built = scorer_from_args(run=lm_run, carry="false", batch_size="auto", max_batch_size=4,
                             device="cpu")
    assert (built.carry, built.batch_size, built.device.type) == (False, 4, "cpu")


def test_without_lm_eval_the_error_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now fails
    monkeypatch.setitem(sys.modules, "lm_eval.api", None)
    monkeypatch.setitem(sys.modules, "lm_eval.api.model", None)
    with pytest.raises(EnvironmentProblem, match="lm-eval is not installed") as err:
        adapter.register.__wrapped__()
    assert "nestgraph[lm-eval]" in err.value.hint
    monkeypatch.setattr(adapter, "register", adapter.register.__wrapped__)
    assert adapter.main(["--model", "nestgraph", "--tasks", "x"]) == EXIT_ENVIRONMENT
    assert "pip install 'nestgraph[lm-eval]'" in capsys.readouterr().err


# ----------------------------------------------------------------------- through lm-eval

@pytest.fixture
def offline(monkeypatch, tmp_path):
    """lm-eval imported with the hub switched off and its caches in tmp_path; its task index
    holds only the tiny tasks (indexing its thousands of built-in tasks takes ten seconds)."""
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    lm_eval = pytest.importorskip("lm_eval")
    tasks = pytest.importorskip("lm_eval.tasks")
    manager = tasks.TaskManager

    def own(*args, include_path=None, include_defaults=True, **kwargs):
        return manager(*args, include_path=include_path or str(TASKS), include_defaults=False,
                       **kwargs)

    monkeypatch.setattr(tasks, "TaskManager", own)
    return lm_eval


def test_lm_eval_scores_the_tiny_local_tasks(offline, lm_run, scorer):
    from lm_eval.tasks import TaskManager

    adapter.register()
    tasks = ["nestgraph_tiny_choice", "nestgraph_tiny_answer", "nestgraph_tiny_text"]
    out = offline.simple_evaluate(model="nestgraph", model_args=f"run={lm_run},carry=false",
                                  tasks=tasks, task_manager=TaskManager(),
                                  batch_size=2, device="cpu")
    results = out["results"]
    assert 0 <= results["nestgraph_tiny_choice"]["acc,none"] <= 1
    assert 0 <= results["nestgraph_tiny_answer"]["exact_match,none"] <= 1
    docs = [json.loads(line)["text"].encode() for line in
            (TASKS / "tiny.jsonl").read_text(encoding="utf-8").splitlines()]
    nats = -sum(scorer.loglikelihood_rolling(docs))
    expected = nats / math.log(2) / sum(len(d) for d in docs)
    assert results["nestgraph_tiny_text"]["bits_per_byte,none"] == pytest.approx(expected,
                                                                                 rel=1e-5)


def test_the_command_line_prints_nestgraph_errors(offline, tmp_path, capsys):
    code = adapter.main(["--model", "nestgraph", "--model_args", f"run={tmp_path}",
                         "--include_path", str(TASKS), "--tasks", "nestgraph_tiny_choice",
                         "--device", "cpu"])
    assert code == EXIT_USAGE
    assert "not a run folder" in capsys.readouterr().err

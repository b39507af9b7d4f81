"""The tiny tasks' documents, read from the jsonl file beside this one: no download."""

import json
from pathlib import Path


def load(**_):
    import datasets

    lines = (Path(__file__).parent / "tiny.jsonl").read_text(encoding="utf-8").splitlines()
    return {"test": datasets.Dataset.from_list([json.loads(line) for line in lines])}

"""`nestgraph tokenizer ...`: tokenizer files that ``data.tokenizer`` can name."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nestgraph.cli.common import CONTEXT, DebugOpt, app, handled
from nestgraph.cli.help import Command
from nestgraph.console import status as _status
from nestgraph.errors import UsageProblem
from nestgraph.escape import printable

tokenizer_app = typer.Typer(
    no_args_is_help=True, add_completion=False, rich_markup_mode=None, context_settings=CONTEXT,
    help="Tokenizer files for data.tokenizer (needs the tokenizers extra).")
app.add_typer(tokenizer_app, name="tokenizer",
              short_help="Train a byte-level BPE tokenizer file for data.tokenizer.")



@tokenizer_app.command("train", cls=Command,
                       short_help="Train a byte-level BPE on a text file or folder.")
@handled
def train(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(metavar="DATA",
                                         help="a text file or a folder of text files")],
    vocab: Annotated[int, typer.Option("--vocab", metavar="N",
                                       help="tokens: the 256 bytes, then learned merges")],
    out: Annotated[Path, typer.Option("-o", "--out", metavar="FILE",
                                      help="where the tokenizer goes")] = Path("tokenizer.json"),
    max_bytes: Annotated[int, typer.Option(
        "--max-bytes", metavar="N", help="read at most this much of DATA (as data.max_bytes)")]
    = 4_000_000,
    debug: DebugOpt = False,
) -> None:
    """Train a byte-level BPE of at most N tokens on DATA and write it (atomically) as a
    tokenizers file, for data.tokenizer; set model.vocab to N. Every text encodes (the 256
    bytes are tokens) and decodes back to the same bytes.
    Example: nestgraph tokenizer train corpus.txt --vocab 512 -o tokenizer.json
    """
    from nestgraph.fsutil import atomic_write_text, environment_errors
    from nestgraph.runtime.train.sources import DataError, read_user_path
    from nestgraph.runtime.train.tokenizer import bpe_from_bytes
    from nestgraph.spec.schema.sections import BPE_MAX, BPE_MIN  # as the schema's {bpe: N}

    if not BPE_MIN <= vocab <= BPE_MAX:
        raise UsageProblem(f"--vocab {vocab} is out of range",
                           f"give {BPE_MIN} to {BPE_MAX}: the 256 bytes and at least one merge")
    if max_bytes < 1:
        raise UsageProblem("--max-bytes must be at least 1")
    if not out.parent.is_dir():
        raise UsageProblem(f"cannot write '{printable(str(out))}': its folder does not exist",
                           "create the folder first, or pick another path")
    try:
        raw = read_user_path(data, max_bytes)[0][:max_bytes]
    except DataError as err:  # its hint speaks of --data, which this command does not have
        raise DataError(err.message, "give a text file or a folder of text files") from None
    tokenizer = bpe_from_bytes(raw, vocab, what=f"'{data}'", name=str(out))
    per_token = len(raw) / max(tokenizer.encode(raw, f"'{data}'").numel(), 1)
    with environment_errors(out):
        atomic_write_text(out, tokenizer.text)
    _status(printable(f"wrote {out}: {tokenizer.vocab} tokens, {per_token:.2f} bytes per token "
                      f"on {data}; train with data.tokenizer={out} "
                      f"model.vocab={tokenizer.vocab}"))

"""Text classification: texts become token ids ``[N, max_length]`` (int64, 0 = padding).

The tokenizer is a local Hugging Face tokenizer folder (``[task] tokenizer``, or the Hugging
Face teacher's own folder), loaded with ``local_files_only=True``; without one, a WordPiece
tokenizer (BERT's normaliser and pre-tokeniser, ``[CLS] … [SEP]`` around each text) is
trained with the ``tokenizers`` library on the **training split only**, so no validation or
test word shapes the vocabulary. Its ``tokenizer.json`` travels with the task (run folder,
export), so a shipped student is fed exactly as it was trained.

Token ids are cached under the teacher cache (``<cache>/tokens/<key>.pt``), keyed by the
texts, the tokenizer and ``max_length``: a second run with the same data does not tokenize
again.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.durable.rundir import atomic_write_bytes
from bench.errors import InputError

__all__ = ["SPECIAL_TOKENS", "Tokenized", "tokenize", "train_wordpiece"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")  # [PAD] is id 0


@dataclass(frozen=True)
class Tokenized:
    """Every row's token ids, the vocabulary size, and the tokenizer as JSON."""

    ids: np.ndarray  # [N, max_length] int64
    vocab_size: int
    tokenizer_json: str
    source: str  # "trained WordPiece (vocab V)" or the folder


def train_wordpiece(texts: Iterable[str], vocab_size: int) -> Any:
    """A WordPiece tokenizer (BERT's normaliser and pre-tokeniser, ``[CLS] … [SEP]``) trained
    on ``texts`` (any iterable: a stream is read once)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


def _encode_fast(tok: Any, texts: list[str], length: int) -> np.ndarray:
    tok.enable_padding(pad_id=0, pad_token="[PAD]", length=length)
    tok.enable_truncation(max_length=length)
    encoded = tok.encode_batch(texts)
    return np.asarray([e.ids for e in encoded], dtype=np.int64)


def tokenizer_folder(path: str, what: str) -> object:
    """A Hugging Face tokenizer folder, loaded offline; one line naming ``what`` if not."""
    from bench.models.hf_zoo import quiet_transformers

    quiet_transformers()
    from transformers import AutoTokenizer

    folder = Path(path)
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises many kinds for a folder that does not load
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"{what} must be a Hugging Face tokenizer folder that loads offline "
            f"(AutoTokenizer.from_pretrained(local_files_only=True)). Got {str(folder)!r} "
            f"instead ({type(exc).__name__}: {first[:200]})."
        ) from None
    if tok.pad_token_id != 0:
        raise InputError(
            f"{what} must pad with token id 0 (kdbench's text models mask id 0). Got "
            f"{str(folder)!r}, whose padding id is {tok.pad_token_id!r}."
        )
    return tok


def tokenize(
    texts: np.ndarray,
    train_rows: np.ndarray,
    *,
    max_length: int,
    vocab_size: int,
    tokenizer: str = "",
    tokenizer_json: str = "",
    what: str = "The 'tokenizer' parameter of [task]",
    cache_dir: Path | None = None,
) -> Tokenized:
    """Token ids of every text (a tokenizer folder's, a tokenizer given as its JSON — what a
    run saved —, or a WordPiece trained on the rows ``train_rows``), padded or cut to
    ``max_length``."""
    as_list = [str(t) for t in texts]
    if tokenizer_json:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_str(tokenizer_json)
        return Tokenized(
            _encode_fast(tok, as_list, max_length),
            int(tok.get_vocab_size()),
            tokenizer_json,
            "the run's tokenizer",
        )
    key = hashlib.sha256(
        json.dumps([as_list, tokenizer, _folder_digest(tokenizer), max_length, vocab_size,
                    train_rows.tolist()]).encode()
    ).hexdigest()[:16]  # fmt: skip
    cached = cache_dir / "tokens" / f"{key}.pt" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        blob = torch.load(cached, weights_only=True)
        return Tokenized(
            blob["ids"].numpy(), int(blob["vocab_size"]), blob["tokenizer_json"], blob["source"]
        )
    if tokenizer:
        hf_tok: Any = tokenizer_folder(tokenizer, what)
        ids = np.asarray(
            hf_tok(as_list, padding="max_length", truncation=True, max_length=max_length)[
                "input_ids"
            ],
            dtype=np.int64,
        )
        backend = getattr(hf_tok, "backend_tokenizer", None)
        out = Tokenized(
            ids,
            len(hf_tok),
            backend.to_str() if backend is not None else "",
            f"the tokenizer folder {tokenizer}",
        )
    else:
        wordpiece = train_wordpiece([as_list[i] for i in train_rows], vocab_size)
        ids = _encode_fast(wordpiece, as_list, max_length)
        size = int(wordpiece.get_vocab_size())
        # The corpus may hold fewer distinct pieces than the vocabulary asked for.
        out = Tokenized(
            ids,
            size,
            wordpiece.to_str(),
            f"a WordPiece tokenizer trained on the training split (vocabulary {size:,} of "
            f"the {vocab_size:,} allowed)",
        )
    if cached is not None:
        buf = io.BytesIO()
        torch.save(
            {
                "ids": torch.from_numpy(out.ids),
                "vocab_size": out.vocab_size,
                "tokenizer_json": out.tokenizer_json,
                "source": out.source,
            },
            buf,
        )
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cached, buf.getvalue())
    return out


def _folder_digest(folder: str) -> str:
    """The tokenizer folder's files, hashed (a changed vocabulary is another cache entry)."""
    if not folder or not Path(folder).is_dir():
        return ""
    h = hashlib.sha256()
    for f in sorted(Path(folder).iterdir()):
        if f.is_file() and f.suffix in (".json", ".txt", ".model"):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()

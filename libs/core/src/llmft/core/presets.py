"""Built-in base models that need no download: tiny Llama-architecture configurations with a byte-level BPE
tokenizer trained on local text (the Python standard library's source). The tokenizer ships with this package
(assets/tokenizer/, rebuilt by `python -m llmft.core.presets build-tokenizer`); the weights are initialised from a
fixed seed the first time a preset is used and saved in Hugging Face format under the llmft cache."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.core import chat_templates
from llmft.core.cache import cache_root
from llmft.core.parameters import count_parameters

TOKENIZER_DIR = Path(__file__).resolve().parent / "assets" / "tokenizer"

BOS_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [EOS_TOKEN, PAD_TOKEN, IM_START, IM_END]

# ChatML with {% generation %} markers (llmft.core.chat_templates).
CHAT_TEMPLATE = chat_templates.CHATML


@dataclass(frozen=True)
class Preset:
    """A configuration small enough to train on a CPU, of one of the workshop's families: Llama, or GPT-NeoX (the
    RedPajama-INCITE architecture)."""

    name: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    seed: int = 0
    family: str = "llama"


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        # ~1.8M parameters: the default for tests and the offline pipeline. Layer widths are multiples of 64, the
        # bitsandbytes 4-bit block size (its CPU kernels mishandle a partial block).
        Preset("llmft/tiny-llama", 128, 4, 4, 2, 384, 1024, True),
        # ~20M parameters: benchmarks and quality checks.
        Preset("llmft/small-llama", 384, 11, 6, 2, 1024, 2048, True),
        # ~2.9M parameters, GPT-NeoX (RedPajama-INCITE) architecture: fused query_key_value, parallel residual.
        Preset("llmft/tiny-neox", 128, 4, 4, 4, 512, 1024, False, family="gpt_neox"),
    )
}


def is_preset(name_or_path: str) -> bool:
    return name_or_path in PRESETS


def load_preset_tokenizer() -> Any:
    """The shipped tokenizer as a transformers PreTrainedTokenizerFast, chat template included."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(TOKENIZER_DIR / "tokenizer.json"),
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=max(p.max_position_embeddings for p in PRESETS.values()),
        padding_side="right",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def preset_config(preset: Preset, tokenizer: Any) -> Any:
    from transformers import GPTNeoXConfig, LlamaConfig

    eos = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)]
    if preset.family == "gpt_neox":
        return GPTNeoXConfig(
            vocab_size=len(tokenizer),
            hidden_size=preset.hidden_size,
            intermediate_size=preset.intermediate_size,
            num_hidden_layers=preset.num_hidden_layers,
            num_attention_heads=preset.num_attention_heads,
            max_position_embeddings=preset.max_position_embeddings,
            tie_word_embeddings=preset.tie_word_embeddings,
            rotary_pct=1.0,
            use_parallel_residual=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id,
        )
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_hidden_layers=preset.num_hidden_layers,
        num_attention_heads=preset.num_attention_heads,
        num_key_value_heads=preset.num_key_value_heads,
        max_position_embeddings=preset.max_position_embeddings,
        tie_word_embeddings=preset.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        rms_norm_eps=1e-5,
        attention_bias=False,
        rope_theta=10000.0,
    )


def materialize_preset(name: str, root: Path | None = None) -> Path:
    """Returns the Hugging Face model directory of a preset, creating it (seeded random weights) on first use.
    The folder is written atomically, so concurrent first uses (e.g. two elastic workers) are safe."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from llmft.core.fingerprint import fingerprint_directory, fingerprint_json, short

    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    preset = PRESETS[name]
    # The folder name covers everything that decides the weights: the preset's fields and the tokenizer.
    key = short(
        fingerprint_json({"preset": dataclasses.asdict(preset), "tokenizer": fingerprint_directory(TOKENIZER_DIR)})
    )
    target = (root or cache_root() / "presets") / f"{name.replace('/', '--')}-{key}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = load_preset_tokenizer()
    config = preset_config(preset, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(preset.seed)
        model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def stdlib_corpus(limit_bytes: int = 12_000_000) -> Iterator[str]:
    """Python standard library source files, in a stable order: local text every machine of ours has."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    total = 0
    for path in sorted(stdlib.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts or "tests" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        total += len(text)
        if total > limit_bytes:
            return
        yield text


def train_tokenizer(texts: Iterator[str], vocab_size: int = 8192) -> Any:
    """Trains a byte-level BPE tokenizer (the GPT-2/Llama-3 kind) on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def build_tokenizer(out_dir: Path, vocab_size: int = 8192) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(stdlib_corpus(), vocab_size)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    return out_dir / "tokenizer.json"


def preset_model(name: str) -> Any:
    """A preset's model with random weights, built in memory (nothing is written)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(preset_config(PRESETS[name], load_preset_tokenizer()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmft.core.presets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build-tokenizer", help="retrain the shipped tokenizer on the standard library's source")
    build.add_argument("--out", type=Path, default=TOKENIZER_DIR)
    build.add_argument("--vocab-size", type=int, default=8192)
    show = sub.add_parser("materialize", help="write a preset's model directory and print its path")
    show.add_argument("name", choices=sorted(PRESETS))
    sub.add_parser("list", help="list presets with their parameter counts")
    args = parser.parse_args(argv)
    if args.command == "build-tokenizer":
        print(build_tokenizer(args.out, args.vocab_size))
    elif args.command == "materialize":
        print(materialize_preset(args.name))
    else:
        for name in sorted(PRESETS):
            print(f"{name}\t{count_parameters(preset_model(name))[0]:,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())

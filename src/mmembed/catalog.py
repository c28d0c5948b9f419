"""The models mmembed knows how to run, for ``mmembed models`` (curated; any other hub id is still accepted).

Parameter counts come from ``catalog_sizes.json``, written by ``benchmarks/model_sizes.py`` (each published
architecture built on the meta device and counted); memory is computed from them: parameters x 2 bytes in
fp16/bf16, x 4 bytes in fp32, weights only (activations, image tokens and batch come on top).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str  # "encoder" | "reranker"
    modalities: str
    dim: int | None
    matryoshka: str  # "" when the model has none
    license: str
    non_commercial: bool
    instruction: str  # how a task instruction reaches the model
    backend: str


CATALOG: tuple[ModelEntry, ...] = (
    ModelEntry("Qwen/Qwen3-VL-Embedding-2B", "encoder", "text, image, image+text, interleaved", 2048,
               "any of 64..2048", "Apache-2.0", False,
               "system turn (documents: \"Represent the user's input.\")", "qwen3-vl"),
    ModelEntry("Qwen/Qwen3-VL-Embedding-8B", "encoder", "text, image, image+text, interleaved", 4096,
               "any of 64..4096", "Apache-2.0", False,
               "system turn (documents: \"Represent the user's input.\")", "qwen3-vl"),
    ModelEntry("Qwen/Qwen3-VL-Reranker-2B", "reranker", "text, image, image+text, interleaved", None, "",
               "Apache-2.0", False, "\"<Instruct>: ...\" in the prompt; yes/no logits", "qwen3-vl"),
    ModelEntry("Qwen/Qwen3-VL-Reranker-8B", "reranker", "text, image, image+text, interleaved", None, "",
               "Apache-2.0", False, "\"<Instruct>: ...\" in the prompt; yes/no logits", "qwen3-vl"),
    ModelEntry("nvidia/MM-Embed", "encoder", "text, image, image+text, interleaved", 4096, "", "CC-BY-NC-4.0",
               True, "\"Instruct: ...\\nQuery: \" (queries only)", "mm-embed"),
    ModelEntry("google/siglip2-base-patch16-224", "encoder", "text, image (image+text fused)", 768, "",
               "Apache-2.0", False, "prefixed to query text (not trained with one)", "hf-clip"),
    ModelEntry("openai/clip-vit-base-patch32", "encoder", "text, image (image+text fused)", 512, "", "MIT", False,
               "prefixed to query text (not trained with one)", "hf-clip"),
    ModelEntry("sentence-transformers/all-MiniLM-L6-v2", "encoder", "text", 384, "", "Apache-2.0", False,
               "the model's query prompt (none)", "sentence-transformers"),
)


def parameter_counts() -> dict[str, int]:
    data = json.loads(resources.files("mmembed").joinpath("catalog_sizes.json").read_text())
    return {k: int(v) for k, v in data["parameters"].items()}


def _gb(nbytes: int) -> float:
    gb = nbytes / 1e9
    return round(gb, 2 if gb < 1 else 1)


def rows(cache_dir: Any = None) -> list[dict[str, Any]]:
    """One dict per catalogued model, with parameters, memory and whether it is in the local hub cache."""
    from .hub import cached_models

    counts = parameter_counts()
    cached = cached_models(cache_dir)
    out = []
    for e in CATALOG:
        n = counts.get(e.name)
        row = asdict(e)
        row.update(parameters=n, fp16_gb=_gb(n * 2) if n else None, fp32_gb=_gb(n * 4) if n else None,
                   cached=e.name in cached, cached_gb=round(cached[e.name] / 1e9, 2) if e.name in cached else None)
        out.append(row)
    return out


def format_table(table: list[dict[str, Any]]) -> str:
    def params(n: int | None) -> str:
        if not n:
            return "?"
        return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"

    head = ["model", "kind", "inputs", "params", "fp16 GB*", "fp32 GB*", "dim", "Matryoshka", "license",
            "instruction", "cached"]
    body = [[r["name"], r["kind"], r["modalities"], params(r["parameters"]), str(r["fp16_gb"]),
             str(r["fp32_gb"]), str(r["dim"] or "-"), r["matryoshka"] or "-",
             r["license"] + (" (NON-COMMERCIAL)" if r["non_commercial"] else ""), r["instruction"],
             "yes" if r["cached"] else "no"] for r in table]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("* weights only, computed from the parameter count (2 bytes/parameter in fp16/bf16, 4 in fp32); "
                 "activations come on top.")
    lines.append("Load any of them with mmembed.load_encoder(NAME) / load_reranker(NAME): downloaded once into the "
                 "Hugging Face cache, then offline. The default encoder (mmembed-mini) is bundled.")
    return "\n".join(lines)


__all__ = ["CATALOG", "ModelEntry", "format_table", "parameter_counts", "rows"]

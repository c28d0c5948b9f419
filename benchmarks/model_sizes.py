"""Parameter counts of the models in ``mmembed models``, by building each published architecture on the meta
device (no weights, no download) and counting; memory = parameters x bytes per parameter (weights only).

    python benchmarks/model_sizes.py     # writes src/mmembed/catalog_sizes.json (read by `mmembed models`)

The architecture sizes are the published config.json values of each model, written out below.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_quality import run_header  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "src" / "mmembed" / "catalog_sizes.json"

QWEN3_VL = {
    "2B": {"text": dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                        num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
           "vision": dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, patch_size=16,
                          spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=2048,
                          num_position_embeddings=2304, deepstack_visual_indexes=[5, 11, 17]), "tie": True},
    "8B": {"text": dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                        num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
           "vision": dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, patch_size=16,
                          spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=4096,
                          num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24]), "tie": False},
}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # tied weights are one parameter, counted once


def qwen3_vl(size: str, *, head: bool) -> int:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLModel

    spec = QWEN3_VL[size]
    cfg = Qwen3VLConfig(text_config=spec["text"], vision_config=spec["vision"], tie_word_embeddings=spec["tie"])
    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration(cfg) if head else Qwen3VLModel(cfg)
    return count(model)


def siglip2_base() -> int:
    from transformers import SiglipConfig, SiglipModel

    cfg = SiglipConfig(text_config=dict(vocab_size=256000, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=64),
                       vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                          num_attention_heads=12, image_size=224, patch_size=16))
    with torch.device("meta"):
        return count(SiglipModel(cfg))


def mm_embed() -> int:
    from transformers import CLIPVisionConfig, CLIPVisionModel, MistralConfig, MistralModel

    from mmembed.encoders.nvembed_pooling import LatentAttentionPooling

    with torch.device("meta"):
        vision = CLIPVisionModel(CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                                  num_attention_heads=16, image_size=336, patch_size=14))
        text = MistralModel(MistralConfig(vocab_size=32002, hidden_size=4096, intermediate_size=14336,
                                          num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8))
        projector = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.Linear(4096, 4096))
        pooling = LatentAttentionPooling(4096)
    return count(vision) + count(text) + count(projector) + 4096 + count(pooling)  # + image_newline


def clip_vit_b32() -> int:
    from transformers import CLIPConfig, CLIPModel

    with torch.device("meta"):
        return count(CLIPModel(CLIPConfig(projection_dim=512)))  # CLIPConfig's defaults are ViT-B/32


def minilm_l6() -> int:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=30522, hidden_size=384, intermediate_size=1536, num_hidden_layers=6,
                     num_attention_heads=12)
    with torch.device("meta"):
        return count(BertModel(cfg, add_pooling_layer=False))


def main() -> int:
    counts = {
        "Qwen/Qwen3-VL-Embedding-2B": qwen3_vl("2B", head=False),
        "Qwen/Qwen3-VL-Embedding-8B": qwen3_vl("8B", head=False),
        "Qwen/Qwen3-VL-Reranker-2B": qwen3_vl("2B", head=True),
        "Qwen/Qwen3-VL-Reranker-8B": qwen3_vl("8B", head=True),
        "nvidia/MM-Embed": mm_embed(),
        "google/siglip2-base-patch16-224": siglip2_base(),
        "openai/clip-vit-base-patch32": clip_vit_b32(),
        "sentence-transformers/all-MiniLM-L6-v2": minilm_l6(),
    }
    result = {**run_header("model_sizes", with_load=False),
              "method": "published architecture built on the meta device; parameters counted (tied once); "
                        "memory = parameters x 2 bytes (fp16/bf16) or x 4 bytes (fp32), weights only",
              "parameters": counts}
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    for name, n in counts.items():
        print(f"{name:42s} {n / 1e9:6.3f} B  fp16 {n * 2 / 1e9:5.1f} GB  fp32 {n * 4 / 1e9:5.1f} GB")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

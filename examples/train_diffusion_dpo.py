"""Train a tiny text-to-image diffusion model with Diffusion-DPO on generated image pairs (CPU).

Everything is built offline from configs, with random weights: a word-level tokenizer and a
2-layer CLIP text encoder, a small AutoencoderKL and a small UNet2DConditionModel (diffusers).
The pipeline is the one a Pick-a-Pic run uses:

    image pairs in Pick-a-Pic's layout (caption, jpg_0, jpg_1 as PNG bytes, label_0, label_1)
    -> preference pairs (caption, chosen, rejected; ties dropped, as Diffusion-DPO does)
    -> VAE latents, encoded once and stored as Arrow fixed-shape tensor columns
    -> Diffusion-DPO on the UNet's denoising errors (prefkit.losses.diffusion_dpo_loss)

The captions say which image is preferred: "a red circle" prefers a red circle to a blue circle
or a red square. Latents are precomputed once, like reference log-probs for text, because the
VAE is frozen; the frozen text encoder's caption embeddings likewise. The reference model's
errors are not: they depend on the noise and timestep drawn at every step, so the frozen
reference UNet runs once per step under ``no_grad`` (a forward pass without a backward, about a
third of a step's cost). At step 0 policy == reference, so the loss is log 2 and no pair is
ranked right yet (implicit accuracy 0); both improve as it trains.

    python examples/train_diffusion_dpo.py                    # 40 steps (~10 s of training on one core)
    python examples/train_diffusion_dpo.py --steps 80 --beta 50 --out /tmp/ddpo
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import prefkit as pk
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from prefkit.losses import denoising_losses, diffusion_dpo_loss

#: The colours and shapes the captions name; RGB values far apart so a random VAE separates them.
COLOURS = {"red": (220, 40, 40), "green": (40, 190, 70), "blue": (50, 70, 230),
           "yellow": (235, 215, 40)}
SHAPES = ("circle", "square", "triangle")
IMAGE_SIZE = 32
#: Token ids of the word-level tokenizer's special tokens.
PAD, BOS, EOS = 0, 1, 2
MAX_TOKENS = 6  # <s> a red circle </s> <pad>
#: Schema-metadata key of the latents table's encoding record.
LATENTS_KEY = b"prefkit.latents"


# ---- data: Pick-a-Pic-style image pairs ------------------------------------------------------


def draw(colour: str, shape: str, rng: np.random.Generator) -> bytes:
    """A PNG of one coloured shape on a grey background, jittered in position and size."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (128, 128, 128))
    pen = ImageDraw.Draw(image)
    r = int(rng.integers(8, 12))
    cx, cy = (int(v) for v in rng.integers(r + 1, IMAGE_SIZE - r - 1, size=2))
    fill = COLOURS[colour]
    if shape == "circle":
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        pen.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def pick_a_pic_pairs(pairs_per_caption: int, seed: int, tie_every: int = 4) -> pa.Table:
    """Image comparisons in Pick-a-Pic v2's layout, built with plain pyarrow.

    For every caption ("a <colour> <shape>") ``pairs_per_caption`` comparisons of a matching
    image against one with the wrong colour or the wrong shape, in random slots (label 1 for
    the preferred image, 0 for the other). Every ``tie_every``-th comparison shows two matching
    images instead and is labelled a tie (0.5 / 0.5), as split decisions are in Pick-a-Pic.
    """
    rng = np.random.default_rng(seed)
    rows = {"caption": [], "jpg_0": [], "jpg_1": [], "label_0": [], "label_1": []}
    for colour in COLOURS:
        for shape in SHAPES:
            for k in range(pairs_per_caption):
                good = draw(colour, shape, rng)
                if tie_every and k % tie_every == tie_every - 1:
                    other, label = draw(colour, shape, rng), 0.5
                else:
                    if rng.random() < 0.5:
                        wrong = [c for c in COLOURS if c != colour]
                        other = draw(wrong[rng.integers(len(wrong))], shape, rng)
                    else:
                        wrong = [s for s in SHAPES if s != shape]
                        other = draw(colour, wrong[rng.integers(len(wrong))], rng)
                    label = 1.0
                first = rng.random() < 0.5
                rows["caption"].append(f"a {colour} {shape}")
                rows["jpg_0"].append(good if first else other)
                rows["jpg_1"].append(other if first else good)
                rows["label_0"].append(label if first else 1.0 - label)
                rows["label_1"].append(1.0 - label if first else label)
    return pa.table({
        "caption": pa.array(rows["caption"], pa.string()),
        "jpg_0": pa.array(rows["jpg_0"], pa.binary()),
        "jpg_1": pa.array(rows["jpg_1"], pa.binary()),
        "label_0": pa.array(rows["label_0"], pa.float64()),
        "label_1": pa.array(rows["label_1"], pa.float64()),
    })


def preference_pairs(comparisons: pa.Table) -> tuple[pa.Table, dict]:
    """``caption, chosen, rejected`` (PNG bytes) from Pick-a-Pic comparisons; ties dropped.

    Uses ``pk.image_pairs`` where this prefkit has it; otherwise binarises with pyarrow
    compute as Diffusion-DPO's training script does (keep ``label_0 != label_1``, the image with
    the higher label is chosen). Either way the image bytes are moved, never decoded.
    """
    if hasattr(pk, "image_pairs"):
        pairs = pk.image_pairs(comparisons, ties="drop")
        report = pk.report_of(pairs)
        return pairs, {"rows_in": report.get("rows_in"), "dropped": report.get("dropped", {})}
    decided = comparisons.filter(pc.not_equal(comparisons["label_0"], comparisons["label_1"]))
    first = pc.greater(decided["label_0"], decided["label_1"])
    pairs = pa.table({
        "caption": decided["caption"],
        "chosen": pc.if_else(first, decided["jpg_0"], decided["jpg_1"]),
        "rejected": pc.if_else(first, decided["jpg_1"], decided["jpg_0"]),
    })
    ties = comparisons.num_rows - decided.num_rows
    return pairs, {"rows_in": comparisons.num_rows, "dropped": {"tie": ties}}


# ---- models, from configs --------------------------------------------------------------------


def build_tokenizer(captions: list[str]):
    """A word-level tokenizer over the captions' words, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for c in captions for w in c.split()})
    vocab = {"<pad>": PAD, "<s>": BOS, "</s>": EOS, "<unk>": 3}
    vocab.update({w: i + 4 for i, w in enumerate(words)})
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", BOS), ("</s>", EOS)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>",
                                   model_max_length=MAX_TOKENS)


def build_text_encoder(vocab_size: int, seed: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=4,
                            max_position_embeddings=MAX_TOKENS, pad_token_id=PAD,
                            bos_token_id=BOS, eos_token_id=EOS)
    return CLIPTextModel(config).eval().requires_grad_(False)


def build_vae(seed: int):
    """An AutoencoderKL taking 3x32x32 images to 4x8x8 latents (two downsamplings)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3,
                         block_out_channels=(16, 32, 32), layers_per_block=1,
                         norm_num_groups=8, sample_size=IMAGE_SIZE).eval().requires_grad_(False)


def build_unet(seed: int, latent_size: int):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=latent_size, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=8,
    )


# ---- latents, precomputed once and stored as Arrow tensors -----------------------------------


def decode_png(images: pa.Array) -> torch.Tensor:
    """PNG bytes -> ``[N, 3, H, W]`` float pixels in [-1, 1] (the VAE's input range)."""
    from PIL import Image

    pixels = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in images.to_pylist()]
    return torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def tensor_column(values: torch.Tensor) -> pa.ExtensionArray:
    """``[N, *shape]`` float32 -> an Arrow fixed-shape tensor array of N ``shape`` tensors."""
    return pa.FixedShapeTensorArray.from_numpy_ndarray(
        np.ascontiguousarray(values.numpy(), dtype=np.float32))


def column_tensor(table: pa.Table, name: str) -> torch.Tensor:
    """A fixed-shape tensor column back as one ``[N, *shape]`` torch tensor.

    ``to_numpy_ndarray`` is a zero-copy, read-only view of the column's buffer; it is copied
    once as a whole (torch tensors want writable memory), never row by row.
    """
    return torch.from_numpy(table.column(name).combine_chunks().to_numpy_ndarray().copy())


def encode_latents(pairs: pa.Table, vae, batch_size: int = 64) -> pa.Table:
    """``pairs`` plus ``chosen_latents`` and ``rejected_latents`` fixed-shape tensor columns.

    The VAE runs once over every image (its posterior mean, not a sample, so the table is
    deterministic). As Stable Diffusion's 0.18215, a scaling factor brings the latents to unit
    variance: this random VAE's is 1 / std over the data. It is stored with the VAE config in
    the schema metadata under ``prefkit.latents``, beside any provenance the pairs carry.
    """
    encoded = {}
    with torch.no_grad():
        for side in ("chosen", "rejected"):
            parts = [vae.encode(decode_png(pairs[side].slice(i, batch_size).combine_chunks()))
                     .latent_dist.mean for i in range(0, pairs.num_rows, batch_size)]
            encoded[side] = torch.cat(parts)
    scale = 1.0 / torch.cat(list(encoded.values())).std().item()
    table = pairs
    for side, latents in encoded.items():
        table = table.append_column(f"{side}_latents", tensor_column(latents * scale))
    record = {"scaling_factor": scale, "vae": dict(vae.config), "posterior": "mean"}
    metadata = dict(pairs.schema.metadata or {})
    metadata[LATENTS_KEY] = json.dumps(record, default=str).encode()
    return table.replace_schema_metadata(metadata)


# ---- Diffusion-DPO ---------------------------------------------------------------------------


def caption_embeddings(captions: pa.ChunkedArray, tokenizer, text_encoder) -> torch.Tensor:
    """``[N, tokens, hidden]`` frozen text-encoder states of every row's caption."""
    ids = tokenizer(captions.to_pylist(), padding="max_length", max_length=MAX_TOKENS,
                    truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return text_encoder(ids).last_hidden_state


def dpo_step_inputs(latents_w, latents_l, embeds, scheduler, generator):
    """Noisy latents of winner and loser with the SAME noise and timestep, stacked [w; l]."""
    noise = torch.randn(latents_w.shape, generator=generator)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (latents_w.shape[0],),
                      generator=generator)
    noise2, t2 = torch.cat([noise, noise]), torch.cat([t, t])
    noisy = scheduler.add_noise(torch.cat([latents_w, latents_l]), noise2, t2)
    return noisy, t2, torch.cat([embeds, embeds]), noise2


def dpo_loss(policy, reference, inputs, beta):
    """Diffusion-DPO loss and metrics of one batch of stacked [winner; loser] inputs."""
    noisy, t, embeds, noise = inputs
    model_w, model_l = denoising_losses(policy(noisy, t, embeds).sample, noise).chunk(2)
    with torch.no_grad():
        ref_w, ref_l = denoising_losses(reference(noisy, t, embeds).sample, noise).chunk(2)
    return diffusion_dpo_loss(model_w, model_l, ref_w, ref_l, beta=beta)


def evaluate(policy, reference, data, scheduler, beta, draws: int, seed: int):
    """Mean loss and implicit accuracy over every pair, on fixed noise and timesteps."""
    latents_w, latents_l, embeds = data
    generator = torch.Generator().manual_seed(seed)
    loss = accuracy = 0.0
    with torch.no_grad():
        for _ in range(draws):
            inputs = dpo_step_inputs(latents_w, latents_l, embeds, scheduler, generator)
            value, metrics = dpo_loss(policy, reference, inputs, beta)
            loss += value.item() / draws
            accuracy += metrics["rewards/accuracies"].item() / draws
    return loss, accuracy


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=12, help="pairs per step")
    parser.add_argument("--pairs-per-caption", type=int, default=4)
    parser.add_argument("--beta", type=float, default=100.0,
                        help="Diffusion-DPO beta (--beta_dpo's scale; SD uses 5000)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for comparisons.parquet, latents.parquet, history.jsonl")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (one is fastest for models this small)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    torch.set_num_threads(args.threads)
    from diffusers import DDPMScheduler

    comparisons = pick_a_pic_pairs(args.pairs_per_caption, args.seed)
    pairs, accounting = preference_pairs(comparisons)
    table = encode_latents(pairs, build_vae(args.seed))
    say(f"{table.num_rows} pairs from {accounting['rows_in']} comparisons "
        f"(dropped: {accounting['dropped']}); latents "
        f"{table.schema.field('chosen_latents').type.shape}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        pq.write_table(comparisons, args.out / "comparisons.parquet")
        pq.write_table(table, args.out / "latents.parquet")
        table = pq.read_table(args.out / "latents.parquet")  # train from what was stored

    tokenizer = build_tokenizer(table.column("caption").unique().to_pylist())
    embeds = caption_embeddings(table.column("caption"), tokenizer,
                                build_text_encoder(len(tokenizer), args.seed))
    data = (column_tensor(table, "chosen_latents"), column_tensor(table, "rejected_latents"),
            embeds)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    policy = build_unet(args.seed, data[0].shape[-1])
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=args.lr, weight_decay=0.0)

    initial = evaluate(policy, reference, data, scheduler, args.beta, 2, args.seed + 1)
    say(f"step    0  eval loss {initial[0]:.4f}  implicit accuracy {initial[1]:.3f}")
    generator = torch.Generator().manual_seed(args.seed)
    history, start = [], time.perf_counter()
    policy.train()
    while len(history) < args.steps:
        order = torch.randperm(table.num_rows, generator=generator)
        for rows in order.split(args.batch):
            inputs = dpo_step_inputs(data[0][rows], data[1][rows], data[2][rows], scheduler,
                                     generator)
            loss, metrics = dpo_loss(policy, reference, inputs, args.beta)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            optimizer.step()
            history.append({"step": len(history) + 1, "loss": loss.item(),
                            **{k: v.item() for k, v in metrics.items()}})
            if len(history) % 5 == 0 or len(history) == args.steps:
                h = history[-1]
                say(f"step {h['step']:4d}  loss {h['loss']:.4f}  implicit accuracy "
                    f"{h['rewards/accuracies']:.3f}  margin {h['rewards/margins']:.4f}")
            if len(history) == args.steps:
                break
    policy.eval()
    final = evaluate(policy, reference, data, scheduler, args.beta, 2, args.seed + 1)
    say(f"done in {time.perf_counter() - start:.1f}s: eval loss {initial[0]:.4f} -> "
        f"{final[0]:.4f}, implicit accuracy {initial[1]:.3f} -> {final[1]:.3f}")
    if args.out is not None:
        with open(args.out / "history.jsonl", "w") as f:
            f.writelines(json.dumps(h) + "\n" for h in history)
    return {"initial_loss": initial[0], "initial_accuracy": initial[1], "final_loss": final[0],
            "final_accuracy": final[1], "history": history, "pairs": table.num_rows,
            "dropped": accounting["dropped"], "table": table}


if __name__ == "__main__":
    result = main()
    sys.exit(0 if result["final_loss"] < result["initial_loss"] else 1)

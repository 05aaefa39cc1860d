"""VideoVAE over a tiny random AutoencoderKL saved to disk: chunking, scaling, the temporal decoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file, save_file

from drivesim.models.vae import VideoVAE

B, T, HW = 2, 5, 32


def tiny_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         layers_per_block=1, norm_num_groups=4, sample_size=HW, scaling_factor=0.5).eval()


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pipeline")
    tiny_vae().save_pretrained(folder / "vae")
    return folder


def frames(seed: int = 0) -> torch.Tensor:
    return torch.rand(B, T, 3, HW, HW, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def perturb_temporal(vae: VideoVAE, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    assert vae.temporal_decoder is not None
    with torch.no_grad():
        for name, p in vae.temporal_decoder.named_parameters():
            if name.startswith("temporal_"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_loads_from_pipeline_and_vae_folders(pipeline_folder: Path) -> None:
    a = VideoVAE.from_pretrained(pipeline_folder)
    b = VideoVAE.from_pretrained(pipeline_folder / "vae")
    assert a.scaling_factor == 0.5 and a.latent_channels == 4 and a.downscale == 2
    x = frames()
    with torch.no_grad():
        torch.testing.assert_close(a.encode_video(x), b.encode_video(x))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        VideoVAE.from_pretrained(pipeline_folder / "nowhere")


def test_encode_is_the_scaled_posterior_mean_and_chunking_changes_nothing(pipeline_folder: Path) -> None:
    vae = VideoVAE.from_pretrained(pipeline_folder)
    x = frames()
    with torch.no_grad():
        z = vae.encode_video(x, chunk_size=100)
        assert z.shape == (B, T, 4, HW // 2, HW // 2)
        ref = vae.vae.encode(x[:, 3]).latent_dist.mean * 0.5
        torch.testing.assert_close(z[:, 3], ref, atol=1e-5, rtol=1e-5)
        assert (vae.encode_video(x, chunk_size=3) - z).abs().max() <= 1e-5
        s1 = vae.encode_video(x, chunk_size=3, sample=True, generator=torch.Generator().manual_seed(4))
        s2 = vae.encode_video(x, chunk_size=7, sample=True, generator=torch.Generator().manual_seed(4))
    assert (s1 - s2).abs().max() <= 1e-5 and (s1 - z).abs().max() > 1e-3


def test_decode_chunked_equals_unchunked_and_the_image_decoder(pipeline_folder: Path) -> None:
    vae = VideoVAE.from_pretrained(pipeline_folder)
    z = torch.randn(B, T, 4, HW // 2, HW // 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = vae.decode_video(z, decode_chunk_size=100)
        assert full.shape == (B, T, 3, HW, HW)
        assert (vae.decode_video(z, decode_chunk_size=3) - full).abs().max() <= 1e-5
        torch.testing.assert_close(full[1, 2], vae.vae.decode(z[1, 2:3] / 0.5).sample[0], atol=1e-5, rtol=1e-5)


def test_bad_inputs_are_clear_errors(pipeline_folder: Path) -> None:
    vae = VideoVAE.from_pretrained(pipeline_folder)
    with pytest.raises(ValueError, match="frames must be"):
        vae.encode_video(torch.zeros(B, 3, HW, HW))
    with pytest.raises(ValueError, match="uint8"):
        vae.encode_video(torch.zeros(B, T, 3, HW, HW, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        vae.encode_video(torch.full((1, 1, 3, HW, HW), 255.0))
    with pytest.raises(ValueError, match="latents must be"):
        vae.decode_video(torch.zeros(B, T, 3, 4, 4))
    with pytest.raises(ValueError, match="chunk"):
        vae.decode_video(torch.zeros(B, T, 4, 4, 4), decode_chunk_size=0)


def test_temporal_decoder_is_the_image_decoder_at_init_and_differs_once_trained(pipeline_folder: Path) -> None:
    image = VideoVAE.from_pretrained(pipeline_folder)
    video = VideoVAE.from_pretrained(pipeline_folder, temporal_decoder=True)
    assert video.temporal_decoder is not None
    keys = video.temporal_decoder.temporal_keys()
    # One temporal block per decoder resnet: mid (2) + up blocks (2 x (layers_per_block + 1)).
    assert len({k.split(".")[0] + "." + k.split(".")[1] for k in keys if k.startswith("temporal_mid")}) == 2
    assert len({".".join(k.split(".")[:3]) for k in keys if k.startswith("temporal_up")}) == 4
    z = torch.randn(B, T, 4, HW // 2, HW // 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = image.decode_video(z)
        assert (video.decode_video(z, decode_chunk_size=T) - ref).abs().max() <= 1e-5
        assert (video.decode_video(z, decode_chunk_size=2) - ref).abs().max() <= 1e-5
        perturb_temporal(video)
        out = video.decode_video(z, decode_chunk_size=T)
    diff = (out - ref).abs().amax(dim=(2, 3, 4))
    assert diff.min() > 1e-3  # every frame of every video changes
    # Time mixes: changing one frame's latent changes its neighbours' decoded frames.
    z2 = z.clone()
    z2[:, 2] += 1.0
    with torch.no_grad():
        out2 = video.decode_video(z2, decode_chunk_size=T)
        out2_image = image.decode_video(z2)
    assert (out2[:, 1] - out[:, 1]).abs().max() > 1e-3
    assert torch.equal(out2_image[:, 1], ref[:, 1])


def test_temporal_decoder_keeps_a_static_clip_static_with_replicate_padding(pipeline_folder: Path) -> None:
    """Trained temporal layers (perturbed here) must not make the end frames of a clip of one repeated
    latent differ from its inner frames: with zero padding they do (a black neighbour in time), with
    replicate padding every frame decodes alike. A static clip is what every chunk border looks like."""
    z = torch.randn(1, 1, 4, HW // 2, HW // 2, generator=torch.Generator().manual_seed(3)).expand(1, T, -1, -1, -1)
    spread = {}
    for padding in ("zeros", "replicate"):
        torch.manual_seed(0)
        video = VideoVAE.from_pretrained(pipeline_folder, temporal_decoder=True, temporal_padding=padding)
        perturb_temporal(video)
        with torch.no_grad():
            out = video.decode_video(z.contiguous(), decode_chunk_size=T)
        spread[padding] = float((out - out[:, T // 2 : T // 2 + 1]).abs().max())
    assert spread["zeros"] > 1e-3 and spread["replicate"] < 1e-5, spread
    with pytest.raises(ValueError, match="temporal padding 'reflect' must be one of"):
        VideoVAE.from_pretrained(pipeline_folder, temporal_decoder=True, temporal_padding="reflect")


def test_temporal_weights_round_trip_and_check_shapes(pipeline_folder: Path, tmp_path: Path) -> None:
    video = VideoVAE.from_pretrained(pipeline_folder, temporal_decoder=True)
    perturb_temporal(video)
    assert video.temporal_decoder is not None
    path = tmp_path / "decoder_temporal.safetensors"
    video.temporal_decoder.save_temporal(path)
    saved = load_file(str(path))
    assert saved and all(k.startswith("temporal_") for k in saved)
    other = VideoVAE.from_pretrained(pipeline_folder, temporal_decoder=True)
    assert other.temporal_decoder is not None
    other.temporal_decoder.load_temporal(path)
    z = torch.randn(1, 3, 4, HW // 2, HW // 2)
    with torch.no_grad():
        torch.testing.assert_close(other.decode_video(z), video.decode_video(z))
    key = sorted(saved)[0]
    saved[key] = torch.zeros(3)
    save_file(saved, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        other.temporal_decoder.load_temporal(tmp_path / "bad.safetensors")

"""Front-ends against librosa (the field's reference) on a real music clip."""

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from zoo.frontends import UnknownNameError, create_frontend


@pytest.fixture(scope="module")
def clip(shared_data):
    y, sr = sf.read(shared_data / "audio" / "Kevin_MacLeod_-_Vibe_Ace.ogg", dtype="float32")
    return y[: 15 * sr], sr  # 15 s of real music


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


def _librosa_reference(name, y, sr, params):
    if name == "mel":
        return librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, **params))
    if name == "mfcc":
        return librosa.feature.mfcc(y=y, sr=sr, **params)
    return librosa.amplitude_to_db(np.abs(librosa.stft(y, **params)))


@pytest.mark.parametrize(
    "name,params",
    [
        ("mel", dict(n_fft=2048, hop_length=512, n_mels=128)),
        ("mel", dict(n_fft=512, hop_length=256, n_mels=96, fmin=20.0, fmax=8000.0)),
        ("mfcc", dict(n_fft=2048, hop_length=512, n_mels=128, n_mfcc=20)),
        ("mfcc", dict(n_fft=2048, hop_length=512, n_mels=128, n_mfcc=40)),
        ("stft", dict(n_fft=1024, hop_length=512)),
        ("stft", dict(n_fft=512, hop_length=256)),
    ],
)
def test_matches_librosa(clip, name, params):
    y, sr = clip
    ours_params = {("f_min" if k == "fmin" else "f_max" if k == "fmax" else k): v for k, v in params.items()}
    frontend = create_frontend(name, sample_rate=sr, **ours_params)
    ours = frontend(torch.from_numpy(y)[None])[0, 0].numpy()
    reference = _librosa_reference(name, y, sr, params)
    assert ours.shape == reference.shape
    assert ours.shape[0] == frontend.n_bins
    assert relative_error(ours, reference) < 1e-3


# Every parameter away from its default, so a key missing from config() changes the rebuilt front-end.
NON_DEFAULT = {"n_fft": 512, "hop_length": 128, "f_min": 50.0, "f_max": 6000.0, "top_db": None, "pad_mode": "reflect"}
NON_DEFAULT_EXTRA = {"mel": {"n_mels": 40}, "mfcc": {"n_mels": 48, "n_mfcc": 13}, "stft": {}}
#: The pitch-aware front-ends have no f_max (their top is f_min * 2**n_octaves).
PITCH_NON_DEFAULT = {"n_fft": 1024, "hop_length": 128, "f_min": 65.0, "top_db": None, "pad_mode": "reflect",
                     "n_octaves": 5, "bins_per_octave": 24}
ALL = ["mel", "mfcc", "stft", "cqt", "chroma"]


@pytest.mark.parametrize("name", ALL)
def test_nothing_derived_is_saved_and_config_rebuilds_it(name):
    params = PITCH_NON_DEFAULT if name in ("cqt", "chroma") else {**NON_DEFAULT, **NON_DEFAULT_EXTRA[name]}
    frontend = create_frontend(name, sample_rate=16000, **params)
    assert dict(frontend.state_dict()) == {}
    assert frontend.config() == params  # every argument is recorded, and nothing else
    rebuilt = create_frontend(name, sample_rate=16000, **frontend.config())
    x = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(rebuilt(x), frontend(x), rtol=0, atol=0)
    assert rebuilt(x).shape != create_frontend(name, sample_rate=16000)(x).shape  # the defaults would differ


@pytest.mark.parametrize("name", ALL)
def test_float32_under_autocast(clip, name):
    y, sr = clip
    frontend = create_frontend(name, sample_rate=sr)
    x = torch.from_numpy(y[: 3 * sr])[None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = frontend(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out, frontend(x))


def test_top_db_is_per_example(clip):
    """A quiet clip in the same batch as a loud one keeps its own dynamic range."""
    y, sr = clip
    x = torch.from_numpy(y[:sr])
    frontend = create_frontend("mel", sample_rate=sr)
    batch = frontend(torch.stack([x, 1e-3 * x]))
    alone = frontend((1e-3 * x)[None])
    assert torch.allclose(batch[1], alone[0], atol=1e-3)


def test_bad_names_and_params():
    with pytest.raises(UnknownNameError, match="valid transforms: chroma, cqt, mel, mfcc, stft"):
        create_frontend("wavelet")
    with pytest.raises(ValueError, match="9 octaves from 32.7032 Hz reach 15804 Hz, above half the sample rate"):
        create_frontend("cqt", sample_rate=22050, n_octaves=9)
    with pytest.raises(ValueError, match="give n_octaves, not f_max"):
        create_frontend("cqt", f_max=4000.0)
    with pytest.raises(ValueError, match="multiple of 12"):
        create_frontend("chroma", bins_per_octave=18)
    with pytest.raises(ValueError, match="n_mfcc"):
        create_frontend("mfcc", n_mels=40, n_mfcc=64)
    with pytest.raises(ValueError, match="mel"):
        create_frontend("mel", n_mfccs=3)
    with pytest.raises(ValueError, match="batch, samples"):
        create_frontend("mel")(torch.zeros(2, 3, 4000))


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_the_audio_and_match_the_in_place_path(name):
    """The dB step runs in place when no gradient flows to the audio; with one it must not."""
    frontend = create_frontend(name, sample_rate=16000, n_fft=512, hop_length=256,
                               **({"f_min": 65.0, "n_octaves": 5} if name in ("cqt", "chroma") else {}))
    audio = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        in_place = frontend(audio)
    leaf = audio.clone().requires_grad_()
    out = frontend(leaf)
    out.sum().backward()
    assert torch.equal(out.detach(), in_place)
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0


@pytest.mark.parametrize("hz", [110.0, 220.0, 261.63, 440.0, 1000.0, 3000.0])
def test_a_tone_lands_on_its_pitch_as_in_librosas_cqt(hz):
    """The semitone filterbank on the STFT puts a tone on the bin librosa.cqt (a true constant-Q
    transform, same f_min C1 and 84 bins) puts it on, and chroma on its pitch class."""
    sr = 22050
    t = np.arange(2 * sr) / sr
    y = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    cqt = create_frontend("cqt", sample_rate=sr)(torch.from_numpy(y)[None])[0, 0].numpy()
    reference = np.abs(librosa.cqt(y, sr=sr, hop_length=512, fmin=librosa.note_to_hz("C1"), n_bins=84))
    assert cqt.shape[0] == reference.shape[0] == 84
    assert cqt.mean(1).argmax() == reference.mean(1).argmax() == round(12 * np.log2(hz / librosa.note_to_hz("C1")))
    chroma = create_frontend("chroma", sample_rate=sr)(torch.from_numpy(y)[None])[0, 0].numpy()
    assert chroma.shape[0] == 12 and chroma.mean(1).argmax() == round(12 * np.log2(hz / librosa.note_to_hz("C1"))) % 12


def test_cqt_and_chroma_follow_librosa_on_real_music(clip):
    """Not the same numbers (a filterbank on the STFT is not a constant-Q kernel), the same
    picture: on 10 s of a real track, the dB spectrograms correlate above 0.9 (measured 0.93) and
    the loudest pitch class of a frame is the chroma of librosa.cqt in most frames (measured 86 %)."""
    y, sr = clip
    y = librosa.resample(y if y.ndim == 1 else y.mean(1), orig_sr=sr, target_sr=22050)[: 10 * 22050]
    x = torch.from_numpy(np.ascontiguousarray(y))[None]
    ours = create_frontend("cqt", sample_rate=22050)(x)[0, 0].numpy()
    magnitude = np.abs(librosa.cqt(y, sr=22050, hop_length=512, fmin=librosa.note_to_hz("C1"), n_bins=84))
    reference = librosa.amplitude_to_db(magnitude, top_db=80)
    frames = min(ours.shape[1], reference.shape[1])
    assert np.corrcoef(ours[:, :frames].ravel(), reference[:, :frames].ravel())[0, 1] > 0.9
    chroma = create_frontend("chroma", sample_rate=22050)(x)[0, 0].numpy()[:, :frames]
    # chroma_cqt of librosa's own CQT (its default 36-bin-per-octave CQT of a float32 signal has
    # crashed the interpreter here, in librosa's compiled code)
    reference_chroma = librosa.feature.chroma_cqt(C=magnitude, bins_per_octave=12)[:, :frames]
    assert (chroma.argmax(0) == reference_chroma.argmax(0)).mean() > 0.75

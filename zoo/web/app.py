"""The listening room: a local web page to hear a library's recommendations (``musiczoo serve``).

A small FastAPI app and one static page (``zoo/web/static``, no CDN: every asset is served
from here, so it works offline). The page lists the library's tracks; selecting one plays
it, shows its genre/tag probabilities, its per-chunk timeline and the model's own input
picture, and the tracks most similar to it (and, with a version model in the library, the other
performances of its work); liked tracks get recommendations as a set; an audio file from outside
the library can be dropped in (the cold-start case).

Safe by default: the server binds to 127.0.0.1; tracks are addressed by their row number
only, so no path from the client is ever opened, and a file resolving outside the music
folder (a symlink out) is refused; uploads are capped in size and duration, decoded in a
temporary folder that is removed afterwards, and an undecodable upload is a 400 answer,
not a crash. Who may call it (the Host and cross-site checks) and how large a body may be are
checked before any route runs, by ``guard.RequestGuard``.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import os
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from fastapi import FastAPI, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel

from datamodules.primitives.audio import AudioDecodeError, decode_audio

from ..predict import predict_files
from ..recommend.library import Library, LibraryError
from ..spec import ModelSpec
from .guard import RequestGuard, upload_too_large

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
MAX_UPLOAD_BYTES = 50 * 2**20
MAX_UPLOAD_SECONDS = 15 * 60
#: The spectrogram picture covers at most this much of a track (the model's input is chunked anyway).
PICTURE_SECONDS = 30.0
#: Colour map of the pictures: dark blue (quiet) to yellow (loud), like matplotlib's viridis.
_ANCHORS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float32)
_LUT = np.stack([np.interp(np.linspace(0, 4, 256), np.arange(5), _ANCHORS[:, c]) for c in range(3)], 1).astype(np.uint8)


class LikeRequest(BaseModel):
    tracks: list[int]
    k: int = 10
    feature: str | None = None  # the library's default_feature
    diversify: float | None = None


def _model_name(spec: ModelSpec) -> str:
    return f"{spec.architecture}/{spec.transform}"


def shown(text: str) -> str:
    """``text`` as a browser can show it: a file name's undecodable bytes as ``\\xff``.

    Linux file names are bytes; Python decodes the bytes that are not UTF-8 to lone surrogates,
    which JSON cannot carry (the whole answer would fail). Tracks are addressed by row number,
    so the shown name only has to be readable, not reversible.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    """A 422 naming each bad field in words, never echoing the value (an ``inf`` cannot be JSON)."""
    problems = [f"{'.'.join(str(part) for part in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in error.errors()]
    return JSONResponse({"detail": shown("; ".join(problems))}, status_code=422)


def create_app(library_path: str | os.PathLike, *, host: str = "127.0.0.1", max_upload_bytes: int = MAX_UPLOAD_BYTES,
               max_upload_seconds: float = MAX_UPLOAD_SECONDS) -> FastAPI:
    """The app serving one library (opened once, here, so a broken library fails before serving).

    ``host`` is the address it is served on: besides the loopback names, the one name a
    request's ``Host`` may carry (``guard.RequestGuard``).

    What each model's outputs are called and mean (label names, task) is read from the
    library's own models' specs (``models/<i>/config.json``), once, here.
    """
    library = Library.open(library_path)
    specs = library.specs()
    music_dir = library.music_dir.resolve()
    app = FastAPI(title="musiczoo listening room", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.library = library
    app.add_middleware(RequestGuard, host=host, max_upload_bytes=max_upload_bytes)
    app.add_exception_handler(RequestValidationError, _invalid_request)

    def track_file(n: int) -> Path:
        """The file of track ``n``: only ever a library track, and only inside the music folder."""
        if not 0 <= n < len(library.tracks):
            raise HTTPException(404, f"no track {n} (the library has {len(library.tracks)})")
        path = library.path_of(library.tracks[n]).resolve()
        if not path.is_relative_to(music_dir):
            raise HTTPException(403, f"track {n} resolves outside the music folder")
        if not path.is_file():
            raise HTTPException(404, f"track {n}'s file is missing (moved or deleted?)")
        return path

    def summary(n: int) -> dict:
        track = library.tracks[n]
        labels = {}
        for spec, per_model in zip(specs, track.labels):
            # An emotion model's values are shown with the track, a version model's training works not at all.
            if spec.task not in ("regression", "versions"):
                labels.update(dict(list(per_model.items())[:3]))
        return {"n": n, "id": shown(track.id), "name": shown(Path(track.id).name), "duration_s": track.duration_s,
                "labels": labels}

    def matches_json(matches) -> list[dict]:
        return [{**m.to_dict(), "id": shown(m.id), "n": library.row[m.id], "path": None} for m in matches]

    def query_options(k: int, feature: str | None, diversify: float | None) -> dict:
        feature = feature or library.default_feature
        if feature not in library.features:
            raise HTTPException(422, f"feature must be one of {', '.join(library.features)}")
        if not 1 <= k <= 100:
            raise HTTPException(422, "k must be between 1 and 100")
        if diversify is not None and not 0 <= diversify <= 1:
            raise HTTPException(422, "diversify must be between 0 and 1")
        return {"k": k, "feature": feature, "diversify": diversify}

    @lru_cache(maxsize=256)
    def segments(n: int, model: int) -> list[dict]:
        (result,) = predict_files(library.models()[model], [track_file(n)], top_k=3, segments=True, progress=False)
        if result.error:
            raise HTTPException(422, shown(result.error))
        return [{"start_s": s, "end_s": e, "labels": lab} for s, e, lab in result.segments]

    @lru_cache(maxsize=128)
    def picture(n: int, model: int) -> bytes:
        net = library.models()[model]
        rate = net.frontend.sample_rate
        try:
            audio = torch.from_numpy(decode_audio(str(track_file(n)), rate)[: int(PICTURE_SECONDS * rate)])
        except AudioDecodeError as e:
            raise HTTPException(422, shown(f"track {n}: {e}")) from None
        with torch.no_grad():
            features = net.frontend.to("cpu")(audio[None])[0, 0].numpy()  # the model's own input
        low, high = np.percentile(features, [1, 99])
        scaled = np.clip((features - low) / max(high - low, 1e-6), 0, 1)
        image = Image.fromarray(_LUT[(scaled[::-1] * 255).astype(np.uint8)])  # low frequencies at the bottom
        buffer = io.BytesIO()
        image.resize((min(max(image.width, 400), 1600), max(image.height, 128)), Image.NEAREST).save(buffer, "PNG")
        return buffer.getvalue()

    @app.get("/api/library")
    def library_info() -> dict:
        return {"tracks": len(library.tracks), "music_folder": shown(music_dir.name), "features": list(library.features),
                "models": [{"name": _model_name(spec), "task": spec.task, "labels": list(spec.label_names),
                            "scale": spec.target_scale} for spec in specs]}

    @app.get("/api/tracks")
    def tracks(q: str = "", offset: int = Query(0, ge=0), limit: int = Query(200, ge=1, le=1000)) -> dict:
        needle = q.strip().lower()
        # The tracks are read from the library's table on disk: the plain listing reads only its page.
        found = range(len(library.tracks)) if not needle else [
            n for n, t in enumerate(library.tracks)
            if needle in t.id.lower() or any(needle in name.lower() for m in t.labels for name in m)]
        return {"total": len(found), "tracks": [summary(n) for n in found[offset:offset + limit]]}

    @app.get("/api/tracks/{n}")
    def track(n: int) -> dict:
        track_file(n)
        predictions = []
        for i, spec in enumerate(specs):
            probs = library.arrays[f"model{i}.probabilities"][n]
            # Probabilities highest first; an emotion model's values in its target order, with their scale.
            order = range(len(probs)) if spec.task == "regression" else np.argsort(-probs)
            predictions.append({"model": _model_name(spec), "task": spec.task, "scale": spec.target_scale,
                                "probabilities": {spec.label_names[j]: round(float(probs[j]), 4) for j in order}})
        return {**summary(n), "predictions": predictions}

    @app.get("/api/tracks/{n}/audio")
    def audio(n: int) -> FileResponse:
        return FileResponse(track_file(n))  # answers Range requests (206), so seeking works

    @app.get("/api/tracks/{n}/segments")
    def track_segments(n: int, model: int = Query(0, ge=0)) -> dict:
        if model >= len(specs):
            raise HTTPException(404, f"no model {model}")
        return {"model": _model_name(specs[model]), "segments": segments(n, model)}

    @app.get("/api/tracks/{n}/spectrogram.png")
    def spectrogram(n: int, model: int = Query(0, ge=0)) -> Response:
        if model >= len(specs):
            raise HTTPException(404, f"no model {model}")
        return Response(picture(n, model), media_type="image/png")

    @app.get("/api/tracks/{n}/similar")
    def similar(n: int, k: int = 10, feature: str | None = None, diversify: float | None = None) -> dict:
        track_file(n)
        started = time.perf_counter()
        matches = library.similar(n, **query_options(k, feature, diversify))
        return {"matches": matches_json(matches), "seconds": time.perf_counter() - started}

    @app.get("/api/tracks/{n}/versions")
    def versions(n: int, k: int = 10) -> dict:
        """Other performances of track ``n``'s work, by the library's version models (``Library.versions``)."""
        track_file(n)
        if "versions" not in library.features:
            raise HTTPException(404, "no versions: the library has no version identification model (its models "
                                     f"are {', '.join(library.tasks)})")
        started = time.perf_counter()
        matches = library.versions(n, query_options(k, "versions", None)["k"])
        return {"matches": matches_json(matches), "seconds": time.perf_counter() - started}

    @app.post("/api/like")
    def like(request: LikeRequest) -> dict:
        for n in request.tracks:
            track_file(n)
        if not request.tracks:
            raise HTTPException(422, "like at least one track")
        matches = library.like(request.tracks, **query_options(request.k, request.feature, request.diversify))
        return {"matches": matches_json(matches)}

    @app.post("/api/upload")
    async def upload(file: UploadFile, k: int = 10, feature: str | None = None,
                     diversify: float | None = None) -> dict:
        options = query_options(k, feature, diversify)  # the body's size was checked by RequestGuard
        suffix = Path(file.filename or "upload").suffix.lower()[:10]
        with tempfile.TemporaryDirectory(prefix="musiczoo-upload-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            size = 0
            with open(path, "wb") as out:
                while block := await file.read(1 << 20):
                    size += len(block)
                    if size > max_upload_bytes:
                        raise HTTPException(413, upload_too_large(max_upload_bytes))
                    out.write(block)
            try:
                seconds = sf.info(str(path)).duration
            except Exception:
                raise HTTPException(400, f"{file.filename}: cannot read audio (not an audio file, or damaged)") from None
            if seconds > max_upload_seconds:
                raise HTTPException(400, f"{file.filename}: {seconds / 60:.1f} minutes is longer than the "
                                         f"{max_upload_seconds / 60:.0f} allowed")
            try:
                labels, matches = library.similar_to_audio(path, **options)
            except LibraryError as e:
                raise HTTPException(400, str(e).replace(str(path), file.filename or "upload")) from None
        return {"name": file.filename, "duration_s": seconds, "labels": labels, "matches": matches_json(matches)}

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def exposure_warning(host: str) -> str | None:
    """A warning when ``host`` is reachable from other machines (anything but a loopback address)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        loopback = False
    if loopback:
        return None
    return f"warning: serving on {host}: anyone who can reach this machine can list and play the library's files"


def serve(library_path: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the listening room until interrupted."""
    import uvicorn

    app = create_app(library_path, host=host)
    warning = exposure_warning(host)
    if warning:
        print(warning, flush=True)
    print(f"listening room for {library_path}: http://{'[::1]' if host == '::1' else host}:{port}/", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")

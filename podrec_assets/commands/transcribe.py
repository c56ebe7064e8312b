"""`podrec transcribe AUDIO...`: one JSON object per file, by the same code as the transcripts asset."""

from __future__ import annotations

import argparse
import json
import sys

from podrec_assets.settings import get_settings


def _run(args: argparse.Namespace) -> int:
    from podrec_assets.resources.asr import AsrResource

    asr = AsrResource.from_settings(
        get_settings(),
        model=args.model,
        threads=args.threads,
        workers=1,
        languages=args.languages,
        batch_size=args.batch_size,
    )
    failures = 0
    for audio in args.audio:
        try:
            with asr.fetch(audio) as path:
                result = asr.transcribe(path).as_dict()
        except Exception as exc:  # noqa: BLE001 - reported per file, like the asset's failed rows
            failures += 1
            result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({"audio": audio, **result}, ensure_ascii=False), flush=True)
    if failures:
        print(f"{failures} of {len(args.audio)} files failed", file=sys.stderr)
    return 1 if failures else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "transcribe",
        help="transcribe audio files or URLs with faster-whisper, one JSON object per file",
        description="Prints text, language, language_probability, duration, segments (start, end, text) per file. "
        "AUDIO is a path, file://, http:// or https:// URL. Exit status 1 when any file failed.",
    )
    parser.add_argument("audio", nargs="+", metavar="AUDIO")
    parser.add_argument(
        "--model", default=None, help="tiny.en, base, or a CTranslate2 model directory (default PODREC_ASR_MODEL)"
    )
    parser.add_argument(
        "--languages", default=None, help="comma-separated allowed languages; '' allows all (default PODREC_LANGUAGES)"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default PODREC_ASR_THREADS)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="speech chunks decoded together; 1 = one by one (default PODREC_ASR_BATCH_SIZE)",
    )
    parser.set_defaults(handler=_run)

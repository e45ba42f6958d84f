"""``python -m minidl serve`` / ``python -m minidl.serving``: tensorflow_model_server's flags.

Boolean flags take gflags' forms too: ``--enable_batching``, ``--enable_batching=true``.
The default host is 127.0.0.1, not TF Serving's 0.0.0.0: a model server reachable from
other machines should be a decision (``--rest_api_host 0.0.0.0``), not a default.
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from minidl.serving.app import create_app


def _flag_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _number(text: str, kind: type) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text, float)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text, float)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _burst(text: str) -> float:
    value = _number(text, float)
    if not (value >= 1 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number >= 1, got {text}")
    return value


class _OneLineParser(argparse.ArgumentParser):
    """A bad flag is one line on stderr and exit status 2, as every other error of serve."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_arg_parser(prog: str = "minidl serve") -> argparse.ArgumentParser:
    """The ``serve`` command's flags, named as ``tensorflow_model_server``'s."""
    parser = _OneLineParser(
        prog=prog, description="Serve minidl models over TensorFlow Serving's REST API.")
    add = parser.add_argument
    add("--model_name", default=None,
        help='name of the model in URLs (default "default"); with --model_base_path')
    add("--model_base_path", default=None,
        help="folder (or fsspec URL: s3://bucket/models/m) holding one sub-folder per "
             "integer version, each with model.npz")
    add("--model_cache_dir", default=None,
        help="where versions of a URL base path (s3://...) are copied before they are "
             "loaded (default ~/.cache/minidl/serving)")
    add("--model_config_file", default=None,
        help="several models: TF Serving's model_config_list, as text proto or JSON")
    add("--rest_api_port", type=_non_negative_int, default=8501,
        help="port (default 8501; 0 picks a free one, printed when ready)")
    add("--rest_api_host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; TF Serving uses 0.0.0.0)")
    add("--rest_api_num_threads", type=_positive_int, default=None,
        help="threads running unbatched predicts off the event loop, per worker (default "
             "4 per CPU)")
    add("--max_connections", type=_positive_int, default=1000,
        help="open connections per worker; one more is answered 503 (default 1000)")
    add("--workers", type=_positive_int, default=1,
        help="server processes on the port, each loading and polling the models (default 1)")
    add("--ssl_certfile", default=None, help="serve HTTPS with this PEM certificate (chain)")
    add("--ssl_keyfile", default=None, help="the private key of --ssl_certfile (PEM)")
    add("--rest_api_enable_cors_support", type=_flag_bool, nargs="?", const=True,
        default=False, help="add CORS headers and answer preflight OPTIONS requests")
    add("--enable_batching", type=_flag_bool, nargs="?", const=True, default=False,
        help="gather concurrent predict requests into one model.predict call")
    add("--max_batch_size", type=_positive_int, default=64,
        help="largest batch, in rows (default 64)")
    add("--batch_timeout_micros", type=_non_negative_int, default=1000,
        help="longest wait for a batch to fill, after its first request (default 1000)")
    add("--num_batch_threads", type=_positive_int, default=1,
        help="batches running at once (default 1)")
    add("--max_enqueued_batches", type=_positive_int, default=100,
        help="queue bound, in batches of max_batch_size rows; beyond it: 429 (default 100)")
    add("--max_enqueued_requests", type=_positive_int, default=128,
        help="predict requests in progress at once; one more is answered 429 (default 128)")
    add("--api_key_file", default=None,
        help="file of accepted API keys, one per line; requests then need one")
    add("--file_system_poll_wait_seconds", type=_non_negative_float, default=1.0,
        help="seconds between scans for new versions; 0 scans once (default 1)")
    add("--max_body_bytes", type=_positive_int, default=10 * 1024 * 1024,
        help="largest request body; larger ones get 413 (default 10 MiB)")
    add("--access_log", default=None, metavar="PATH|-",
        help="write one JSON line per request to PATH (appended to), or - for stdout")
    add("--rate_limit", type=_positive_float, default=None, metavar="R",
        help="requests per second for each API key (each client address without keys); "
             "more get 429 (default: no limit)")
    add("--rate_limit_burst", type=_burst, default=None, metavar="B",
        help="requests a key may send at once before --rate_limit applies (default R)")
    add("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="DEBUG also logs every request (default INFO)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; 0 after a clean stop, 2 for a bad configuration
    (such as a base path that is a file, or a port in use), said in one line."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    if args.model_base_path is None and args.model_config_file is None:
        parser.error("give --model_base_path (and --model_name) or --model_config_file")
    if args.rate_limit_burst is not None and args.rate_limit is None:
        parser.error("--rate_limit_burst needs --rate_limit")
    if (args.ssl_certfile is None) != (args.ssl_keyfile is None):
        parser.error("give both --ssl_certfile and --ssl_keyfile, or neither")
    for flag, path in (("--ssl_certfile", args.ssl_certfile), ("--ssl_keyfile", args.ssl_keyfile)):
        if path is not None and not os.path.isfile(path):
            parser.error(f"{flag} {path}: no such file")
    arguments = dict(
        model_name=args.model_name, model_base_path=args.model_base_path,
        model_config_file=args.model_config_file, enable_batching=args.enable_batching,
        max_batch_size=args.max_batch_size, batch_timeout_micros=args.batch_timeout_micros,
        num_batch_threads=args.num_batch_threads, max_enqueued_batches=args.max_enqueued_batches,
        api_key_file=args.api_key_file,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        max_body_bytes=args.max_body_bytes, enable_cors=args.rest_api_enable_cors_support,
        max_enqueued_requests=args.max_enqueued_requests,
        predict_threads=args.rest_api_num_threads, access_log=args.access_log,
        rate_limit=args.rate_limit, rate_limit_burst=args.rate_limit_burst,
        model_cache_dir=args.model_cache_dir)
    try:
        from minidl.serving.engine import serve

        app = create_app(**arguments)
        # a base path that is a file: say so and stop, rather than wait for it to change
        app.manager.check_base_paths()
        return serve(app if args.workers == 1 else arguments, args.rest_api_host,
                     args.rest_api_port, workers=args.workers,
                     max_connections=args.max_connections, ssl_certfile=args.ssl_certfile,
                     ssl_keyfile=args.ssl_keyfile)
    except ModuleNotFoundError as error:  # the serving extra (see minidl.extras)
        print(f"minidl serve: error: {error}", file=sys.stderr, flush=True)
        return 2
    except (ValueError, OSError) as error:
        message = str(error)
        # only binding the listening socket fails this way: name the flag that chose the port
        if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
            message = (f"port {args.rest_api_port} on {args.rest_api_host} is already in use "
                       "(--rest_api_port); stop the other server or choose another port")
        print(f"minidl serve: error: {message}", file=sys.stderr, flush=True)
        return 2

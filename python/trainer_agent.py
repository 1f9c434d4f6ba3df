"""Progress reports from a training script to trainer-agent (Astrago Trainer).

Standard library only; copy this file next to your script or put its folder on PYTHONPATH
(`trainer-agent local` does that for you)::

    import trainer_agent

    for epoch in range(1, epochs + 1):
        loss, acc = train_one_epoch()
        trainer_agent.report(epoch=epoch, total_epochs=epochs, loss=loss, accuracy=acc)
        path = save_checkpoint(epoch)
        trainer_agent.checkpoint(path)
    trainer_agent.event("warning", "learning rate reduced", lr=1e-4)

Each call writes ONE line ``::trainer::{json}\\n`` to stdout with ONE ``os.write``: torchrun workers share one
pipe and ``print()`` writes the text and the newline separately, so two ranks' output could otherwise be glued
together mid-report. Lines up to 4096 bytes (PIPE_BUF) are atomic on a pipe; keep reports short.

The line carries ``"rank"`` (the global rank from ``RANK``) when that variable is set; the agent lets only rank 0's
epoch reports drive heartbeats, so every rank may call ``report()``.

Metrics must be real numbers (``int``, ``float``, or anything ``float()`` accepts, such as a 0-d tensor or a numpy
scalar). NaN and infinities cannot travel in JSON: such a metric is left out of the report and a warning naming it
is written to stderr once per metric name. A value ``float()`` rejects is left out the same way.

Outside the agent (no ``ASTRAGO_AGENT=1`` and not both ``TRACE_ID`` and ``CHECKPOINT_DIR`` in the environment) every
call is a no-op that returns ``None``, after one warning on stderr, so the same script runs on a laptop unchanged.
``ASTRAGO_AGENT=1`` forces reporting on, ``ASTRAGO_AGENT=0`` forces it off.
"""

import json
import math
import os
import sys

__all__ = ["report", "checkpoint", "event", "enabled", "MARKER"]
__version__ = "1.0.0"

MARKER = "::trainer::"

_warned = set()


def _warn_once(key, message):
    if key in _warned:
        return
    _warned.add(key)
    try:
        sys.stderr.write("trainer_agent: %s\n" % message)
        sys.stderr.flush()
    except Exception:  # stderr closed: nothing left to tell
        pass


def enabled():
    """True when this process runs under trainer-agent (reports are written), False otherwise."""
    flag = os.environ.get("ASTRAGO_AGENT")
    if flag is not None and flag.strip() != "":
        return flag.strip().lower() not in ("0", "false", "no", "off")
    return bool(os.environ.get("TRACE_ID")) and bool(os.environ.get("CHECKPOINT_DIR"))


def _rank():
    raw = os.environ.get("RANK")
    if raw is None:
        return None
    try:
        rank = int(raw.strip())
    except ValueError:
        return None
    return rank if rank >= 0 else None


def _count(name, value, required):
    if value is None:
        if required:
            raise TypeError("trainer_agent.report(): %s is required" % name)
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        # Accept integral floats and integer-like objects (numpy ints), refuse 1.5 or "3".
        try:
            as_int = int(value)
            if isinstance(value, (str, bytes, bool)) or as_int != value:
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise TypeError("trainer_agent.report(): %s must be a non-negative integer, got %r" % (name, value))
        value = as_int
    if value < 0:
        raise ValueError("trainer_agent.report(): %s must be a non-negative integer, got %r" % (name, value))
    return value


def _metric(name, value):
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int) and abs(value) <= 2**53:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        _warn_once(("type", name), "metric %r is not a number (%s); left out of the report" % (name, type(value).__name__))
        return None
    if math.isnan(number) or math.isinf(number):
        _warn_once(("finite", name), "metric %r is %r; non-finite values are left out of the report" % (name, number))
        return None
    return number


def _emit(payload):
    """Writes one report line with one os.write; returns the line written (str), or None when disabled."""
    if not enabled():
        _warn_once(
            "disabled",
            "not running under trainer-agent (set ASTRAGO_AGENT=1 to force); reports are not sent",
        )
        return None
    rank = _rank()
    if rank is not None:
        payload["rank"] = rank
    line = MARKER + json.dumps(payload, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=str) + "\n"
    data = line.encode("ascii")
    stream = sys.stdout
    try:
        # Text already printed must come first: flush Python's buffer, then write the report beside it.
        stream.flush()
        fd = stream.fileno()
    except Exception:
        fd = None
    try:
        if fd is None:
            # stdout was replaced by an object without a file descriptor: one write call is the best it can do.
            stream.write(line)
            stream.flush()
        else:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
    except Exception as error:  # no stdout, or the agent went away (broken pipe): never crash the training
        _warn_once("write", "could not write a report (%s); further failures are silent" % error)
        return None
    return line


def report(epoch=None, total_epochs=None, step=None, **metrics):
    """Reports the end of an epoch (or a step within one) with its metrics.

    epoch: int >= 0 (required); total_epochs, step: int >= 0 or None; metrics: name=number.
    Returns the line written, or None outside the agent.
    """
    payload = {"epoch": _count("epoch", epoch, True)}
    total = _count("total_epochs", total_epochs, False)
    if total is not None:
        payload["total_epochs"] = total
    at = _count("step", step, False)
    if at is not None:
        payload["step"] = at
    clean = {}
    for name, value in metrics.items():
        number = _metric(name, value)
        if number is not None:
            clean[name] = number
    payload["metrics"] = clean
    return _emit(payload)


def checkpoint(path):
    """Tells the agent that the checkpoint file or folder at `path` is complete and can be uploaded now.

    The path is made absolute. Returns the line written, or None outside the agent.
    """
    if path is None:
        raise TypeError("trainer_agent.checkpoint(): path is required")
    full = os.path.abspath(os.fspath(path))
    if isinstance(full, bytes):
        full = os.fsdecode(full)
    if not os.path.exists(full):
        _warn_once(("missing", full), "checkpoint %s does not exist (yet); reported anyway" % full)
    return _emit({"checkpoint": full})


def event(type, message=None, **data):
    """Reports an event such as ("warning", "lr reduced", lr=1e-4). Returns the line written, or None."""
    if not isinstance(type, str) or not type:
        raise TypeError("trainer_agent.event(): type must be a non-empty string, got %r" % (type,))
    payload = {"event": type}
    if message is not None:
        payload["message"] = str(message)
    if data:
        payload["data"] = {k: _jsonable(v) for k, v in data.items()}
    return _emit(payload)


def _jsonable(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)

"""The one command-line runner (`python -m retrieval`, `python -m finetune`):
arguments parsed and checked before any model loads, logging to stderr,
malloc set up for CNNs, whatever libraries print sent to stderr so that
stdout carries only the command's answer (`search --json` pipes into a
JSON parser), and every failure a user can meet one line on stderr with
exit status 2, never a traceback: our own errors, and the system's (a full
disk, a read-only cache, an unreadable file)."""

import contextlib
import errno
import logging
import sys

from retrieval.cli.allocator import keep_freed_memory
from retrieval.errors import LookalikeError

# what to do about the system errors a command can meet
ADVICE = {errno.ENOSPC: "the disk is full: free some space (or point --cache-dir elsewhere) and run it again",
          errno.EDQUOT: "the disk quota is used up: free some space and run it again",
          errno.EROFS: "that file system is read-only: point --cache-dir (or the output) at a writable folder",
          errno.EACCES: "permission denied: point --cache-dir (or the output) at a folder you can write to",
          errno.EPERM: "permission denied: point --cache-dir (or the output) at a folder you can write to",
          errno.EIO: "the disk could not read or write it (an I/O error): check the disk and run it again"}


def run(parser, commands: dict, argv=None, check=None) -> int:
    """Parse `argv`, `check(parser, args)` (parser.error for mistakes), run
    `commands[args.command](args, out)`, where `out` is the real stdout
    (commands without sub-commands: `commands[None]`)."""
    args = parser.parse_args(argv)
    if check is not None:
        check(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    keep_freed_memory()  # a CNN's activations reuse memory instead of page-faulting it anew
    answer = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):  # libraries' chatter; the answer goes to `answer`
            return commands[getattr(args, "command", None)](args, answer)
    except LookalikeError as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(system_error(e))
    except KeyboardInterrupt:
        print("interrupted: what was finished is kept, and the next run resumes from it", file=sys.stderr)
        return 130


def system_error(error: OSError) -> str:
    """An OSError as one line: what failed, on which file, and what to do."""
    where = f" ({error.filename})" if error.filename else ""
    what = error.strerror or type(error).__name__
    return f"{what}{where}: {ADVICE.get(error.errno, 'check the path and run it again')}"


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2

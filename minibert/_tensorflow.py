"""TensorFlow, imported once with its start-up chatter kept off the user's stderr.

Importing TensorFlow and probing its devices logs a dozen C++ lines to file descriptor 2 (oneDNN,
`cudart_stub`, `failed call to cuInit` on a machine without a GPU, CPU features), and the first
compilation logs INFO lines (`XLA service ... initialized`, `Compiled cluster using XLA!`). minibert
imports TensorFlow through `load_tensorflow_quietly` (the library on its first model, the CLI before
its work), which
- sets TF_CPP_MIN_LOG_LEVEL=1 unless the user set it: TensorFlow's INFO logs are hidden, its warnings
  and errors after start-up still show;
- captures fd 2 only while TensorFlow imports and probes its devices, and passes on every captured
  line that is not a TensorFlow C++ log line (a Python warning, a traceback) unchanged.
A process that imported TensorFlow itself before minibert keeps its own settings: there is nothing left
to hide but the device probe.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import threading

# glog/absl lines ("I0000 00:00:1795598241.501518   25444 port.cc:153] ..."), absl's notice before its
# logging starts, and the CPU-feature message's second line.
_CHATTER = re.compile(r"[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] |"
                      r"WARNING: All log messages before absl::InitializeLog\(\) is called|"
                      r"To enable the following instructions: .* rebuild TensorFlow|"
                      r"INFO: Created TensorFlow Lite XNNPACK delegate")  # LiteRT's, on every interpreter
_lock = threading.RLock()
_done = False


def load_tensorflow_quietly():
    """Import TensorFlow (once) and probe its devices with the start-up chatter filtered out; returns it."""
    global _done
    with _lock:
        if not _done:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
            with _fd2_filtered():
                import tensorflow as tf

                tf.config.list_physical_devices()  # device probing (cuInit) logs here, not at the first op
            _done = True
    import tensorflow as tf

    return tf


class _fd2_filtered:
    """Send fd 2 to a temporary file for the duration; then write back what is not TensorFlow chatter."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        self.capture = tempfile.TemporaryFile()
        os.dup2(self.capture.fileno(), 2)

    def __exit__(self, *exc):
        try:
            sys.stderr.flush()
        finally:
            os.dup2(self.saved, 2)
            os.close(self.saved)
        self.capture.seek(0)
        kept = [line for line in self.capture.read().splitlines(keepends=True)
                if not _CHATTER.match(line.decode("utf-8", "replace"))]
        self.capture.close()
        if kept:
            os.write(2, b"".join(kept))
        return False

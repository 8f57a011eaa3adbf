"""``python -m backproplab``: the ``backproplab`` command.

Ctrl-C is handled from the first moment: an interrupt while the CLI itself is being imported
exits 130 with one line, like one during training (:func:`backproplab.cli.main.main` covers the
trainer imports).
"""

import sys


def _run() -> int:
    try:
        from backproplab.cli.main import main

        return main()
    except KeyboardInterrupt:  # before main's own handler is in place (or after it returned)
        print("interrupted: everything written so far is kept", file=sys.stderr)
        return 130


sys.exit(_run())

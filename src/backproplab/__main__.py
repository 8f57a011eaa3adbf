import sys

from backproplab.cli.main import main

sys.exit(main())

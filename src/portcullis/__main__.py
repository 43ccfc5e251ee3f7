import sys

from portcullis.cli.main import main

sys.exit(main())

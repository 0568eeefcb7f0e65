import sys

from bench._runner import main

sys.exit(main())

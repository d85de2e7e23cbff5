"""`python -m ldseg_tf.cli ...` is `ldseg ...`."""

import sys

from ldseg_tf.cli import main

sys.exit(main())

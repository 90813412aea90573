import sys

from bench.gpu_kit.kit import main

sys.exit(main())

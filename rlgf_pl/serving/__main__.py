import sys

from rlgf_pl.serving import serve_main

sys.exit(serve_main(sys.argv[1:]))

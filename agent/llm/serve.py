"""``python -m agent.llm.serve --model M.gguf ...``: llama-cpp-python's OpenAI-compatible server, with the
weight-repack choice of the embedded backend (``RADCONSULT_LLM_REPACK``, default auto: off on AMX CPUs).

``python -m llama_cpp.server`` has no switch for it and crashes at the first answer on CPUs with Intel AMX
(see :func:`agent.llm.cpu.repack_weights`). Every argument is passed to llama_cpp.server unchanged. With
llama.cpp's own ``llama-server`` binary, use its ``--no-repack`` flag instead.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    from llama_cpp.server.__main__ import main as server_main

    from agent.llm.cpu import repack_weights
    from agent.llm.llama_handle import repack_choice

    repack = repack_weights(os.environ.get("RADCONSULT_LLM_REPACK", "auto"))
    print(f"radconsult: weight repack {'on' if repack else 'off'}", file=sys.stderr, flush=True)
    with repack_choice(repack):  # the server loads its model inside
        server_main()


if __name__ == "__main__":
    main()

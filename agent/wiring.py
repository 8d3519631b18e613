"""The one place that turns :class:`~agent.settings.Settings` into the lower layers' own configs.

``tools/`` and ``knowledge/`` never import ``agent``: each takes a small frozen config of its own
(imaging limits, the de-identification policy, the classifier config, the knowledge-base config).
Entry points read the settings once and pass these configs down.
"""

from __future__ import annotations

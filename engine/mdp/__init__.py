"""The melody MDP: what the agent sees (``observation``), the style presets (``styles``),
the reward terms (``rewards``) and the Gymnasium environments (``env``). Builds on
:mod:`engine.music` only."""

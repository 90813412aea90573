"""LoRA, one feature: the reference a caller gives (reference), the fetch and cache (cache), the request's LoRA
for one run (source), its node on the model chain (graph) and how well it fits the DiT (fit)."""

"""Governed rollout: lifecycle, gates, feature flags, canary telemetry, policy serving.

- :mod:`lifecycle`: statuses candidate → staging → canary → production → retired |
  rolled_back, artifact content hashes, the audit-log trail;
- :mod:`actions`: promote / roll back / re-route (the only writers of statuses and flags);
- :mod:`gates`: declarative rules over recorded evaluations, checked before promotion;
- :mod:`flags`: sticky canary split by user and segment, read at run time;
- :mod:`telemetry`: per-arm rates with always-valid intervals, guardrails;
- :mod:`serving`: route, generate (in process or upstream) and log chat requests.

The HTTP routes live in ``prefline.collect`` (the layer above), which owns auth.
"""

"""Cluster mode (issue #8): N identical workers behind a load balancer, sharing one database and
one Redis. Building blocks, each usable and tested on its own:

- ``settings``: ``ClusterSettings`` (``redis_url`` unset = single-process mode, the default);
- ``presence``: which worker holds which charger, worker heartbeats, a local directory;
- ``routing``: ``ClusterGateway`` (a ``ChargerGateway``) and ``CommandServer``;
- ``codec``: JSON for commands, results and notices crossing workers (pure);
- ``events``: live notices fanned out to every worker;
- ``leadership``: one planning leader per site, with fencing tokens;
- ``keys``: every Redis key and channel name;
- ``node``: ``connect()`` and ``join()``, which starts them all for one worker.

Needs a standalone Redis (or Sentinel): the Lua scripts touch several keys, which Redis Cluster
would want in one hash slot.
"""

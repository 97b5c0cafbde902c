"""Workloads outside Kubernetes: the token agent and the cloud federation helpers.

- :mod:`issuer.agent.schedule`: when to refresh (kubelet's rule + SDK cache margins), backoff (pure)
- :mod:`issuer.agent.writer`: atomic token files (temp file + fsync + rename)
- :mod:`issuer.agent.client`: one TokenRequest, classified issued / transient / refused
- :mod:`issuer.agent.loop`: the agent loop (injectable clock), status file, exit codes
- :mod:`issuer.agent.cloudconfig`: AWS / Google Cloud / Azure credential configuration (pure)
- :mod:`issuer.agent.federation`: each cloud's documented requirements on an issuer (pure rules)
  and the live check behind ``sa-issuer check-federation``
- :mod:`issuer.agent.cli` / :mod:`issuer.agent.cloud_cli`: the ``sa-issuer`` subcommands
"""

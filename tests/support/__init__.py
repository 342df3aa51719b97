"""Test and benchmark harnesses, never shipped in the package (bench/ puts the checkout root on sys.path).

- ``daemon``: a real virtkitd on a unix socket in a temp dir, and its clean-up
- ``fake_daemon``, ``fake_engine``: that daemon with a process-backed fake engine, injected by argument
- ``nested`` (+ ``bzimage``, ``debs``): the nested-virtualization harness, an L1 guest with a working /dev/kvm
"""

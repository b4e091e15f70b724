"""A TF node: its Spark barrier task and its own Python process.

``task`` (registers with the driver, reserves the TF port, meets the other nodes, starts and
watches the process), ``spawn`` (the process started, told to go, heard, stopped), ``process``
(the node's own process: runs ``main_fun``), ``context`` (the ``ctx`` main_fun gets),
``private_dir``, ``zip_cache`` and ``processes`` (a task's scratch folder, importable zips,
child processes that die with their parent), ``fit_progress`` (the chief's ``model.fit``
reporting progress), ``tensorboard``.

Never imports ``_driver``: a node learns everything from the plan and the control channel.
"""

"""Argument checks shared by the native API and its NumPy twin, one module per family.

``lowbit.<family>`` (native) and ``lowbit.reference.<family>`` both import
``lowbit._checks.<family>`` (and the common ``lowbit._args``), so they accept
and reject exactly the same inputs with the same messages, while neither
imports the other. Besides checks, a module holds what defines the family's
format for both sides (the NF4 table, the kernel's packed row length, the
layout of a result QTensor). No numerics live here.
"""

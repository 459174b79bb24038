"""The theory layer: the derivations of the course in NumPy float64 and SymPy.

No TensorFlow, Keras or JAX here (a test enforces it): :mod:`~dlnotes.theory.softmax`,
:mod:`~dlnotes.theory.residuals`, :mod:`~dlnotes.theory.batchnorm`,
:mod:`~dlnotes.theory.gradcheck`, :mod:`~dlnotes.theory.losses`, :mod:`~dlnotes.theory.graph`,
:mod:`~dlnotes.theory.circuits`, :mod:`~dlnotes.theory.optim`, :mod:`~dlnotes.theory.symbolic`,
:mod:`~dlnotes.theory.convolution`, :mod:`~dlnotes.theory.evaluation`.
"""

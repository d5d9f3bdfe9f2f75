"""Named hits built by a small C function instead of a Python loop.

Why: a batch search's FAISS call is fast enough that turning its (nq, k) id and score arrays into ``Hit`` tuples is
a visible share of the time. For a low-nprobe IVF search (~35 us a query on one core) the Python builder
(``executor.make_hits``: ``map`` of ``tuple.__new__`` over zipped lists) costs 2.4-3 us a query. This C loop allocates
each ``Hit`` directly (``tp_alloc`` of the NamedTuple type, then its four fields), reading scores and slots straight
from the numpy buffers and ids / payloads by slot - no intermediate lists or zip tuples.

It is compiled on first use by ``aisd.core.native`` against this interpreter's headers and called through
``ctypes.PyDLL`` (the GIL stays held; a Python error set by the C code is raised by ctypes). Without a compiler,
with ``AISD_NATIVE_KERNELS=0`` or without the Python headers, ``native_builder()`` is None and ``make_hits`` keeps
its Python loop; the two give identical hits (tests check both).
"""

from __future__ import annotations

import ctypes
import logging
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np

from aisd.core.native import NativeLibrary, compile_library

log = logging.getLogger(__name__)

_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* rows: nq lists of k Hit(id, score, payload, None), from slots [nq, k] (all >= 0) and scores [nq, k] float32.
   ids: int_ids[slot] (int64, n_ids entries) when int_ids is not NULL, else id_list[slot] (a list).
   payloads: payloads[slot] (a list) or None for no payloads. Returns a new list, or NULL with an exception set. */
PyObject *aisd_make_hits(PyObject *hit_type, const int64_t *slots, const float *scores, Py_ssize_t nq,
                         Py_ssize_t k, const int64_t *int_ids, Py_ssize_t n_ids, PyObject *id_list,
                         PyObject *payloads) {
    PyTypeObject *tp = (PyTypeObject *)hit_type;
    int with_payload = payloads != Py_None;
    if (!PyType_Check(hit_type) || !PyType_IsSubtype(tp, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "hit_type must be a tuple subclass");
        return NULL;
    }
    if ((int_ids == NULL && !PyList_Check(id_list)) || (with_payload && !PyList_Check(payloads))) {
        PyErr_SetString(PyExc_TypeError, "id_list and payloads must be lists");
        return NULL;
    }
    Py_ssize_t limit = int_ids != NULL ? n_ids : PyList_GET_SIZE(id_list);
    if (with_payload && PyList_GET_SIZE(payloads) < limit)
        limit = PyList_GET_SIZE(payloads);
    PyObject *out = PyList_New(nq);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < nq; ++i) {
        PyObject *row = PyList_New(k);
        if (row == NULL)
            goto fail;
        PyList_SET_ITEM(out, i, row);
        for (Py_ssize_t j = 0; j < k; ++j) {
            int64_t s = slots[i * k + j];
            if (s < 0 || s >= limit) {
                PyErr_Format(PyExc_IndexError, "slot %lld out of range [0, %zd)", (long long)s, limit);
                goto fail;
            }
            PyObject *hit = tp->tp_alloc(tp, 4);
            if (hit == NULL)
                goto fail;
            /* Not tracked by the cyclic GC: a hit holds an id, a float, None and a stored payload, and can be part
               of no reference cycle (payloads are JSON values that never point back at a hit). Tracked, the
               first collection after a big batch walks every new hit (~0.8 ms for 10,000). */
            PyObject_GC_UnTrack(hit);
            PyList_SET_ITEM(row, j, hit);
            PyObject *id;
            if (int_ids != NULL) {
                id = PyLong_FromLongLong(int_ids[s]);
                if (id == NULL)
                    goto fail;
            } else {
                id = PyList_GET_ITEM(id_list, s);
                Py_INCREF(id);
            }
            PyTuple_SET_ITEM(hit, 0, id);
            PyObject *score = PyFloat_FromDouble((double)scores[i * k + j]);
            if (score == NULL)
                goto fail;
            PyTuple_SET_ITEM(hit, 1, score);
            PyObject *payload = with_payload ? PyList_GET_ITEM(payloads, s) : Py_None;
            Py_INCREF(payload);
            PyTuple_SET_ITEM(hit, 2, payload);
            Py_INCREF(Py_None);
            PyTuple_SET_ITEM(hit, 3, Py_None);
        }
    }
    return out;
fail:
    Py_DECREF(out); /* frees the rows and hits built so far (NULL fields are skipped by tuple dealloc) */
    return NULL;
}
"""

_FLAGS = ["-O2", "-fPIC", "-shared", "-std=c11"]


def _load() -> Any:
    include = sysconfig.get_paths().get("include")
    if not include or not (Path(include) / "Python.h").exists():
        log.info("Python headers not found: search hits use the pure-Python builder")
        return None
    path = compile_library("hits", _SOURCE, [*_FLAGS, f"-I{include}"])
    if path is None:
        return None
    fn = ctypes.PyDLL(str(path)).aisd_make_hits
    fn.restype = ctypes.py_object
    fn.argtypes = [ctypes.py_object, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_ssize_t,
                   ctypes.c_void_p, ctypes.c_ssize_t, ctypes.py_object, ctypes.py_object]
    return fn


_BUILDER = NativeLibrary("native hit builder", _load)


def native_builder() -> Any:
    """The C hit builder, compiled on first call; None when it cannot be built (or AISD_NATIVE_KERNELS=0)."""
    return _BUILDER.get()


def build_hits(fn: Any, hit_type: type, slots: np.ndarray, scores: np.ndarray, int_ids: np.ndarray | None,
               id_list: list[Any], payloads: list[Any] | None) -> list[list[Any]]:
    """Rows of hits through the C builder. slots int64 [nq, k] (all >= 0), scores float32 [nq, k]; ids come from
    ``int_ids[slot]`` when given (int64 array over slots), else ``id_list[slot]``."""
    slots = np.ascontiguousarray(slots, dtype=np.int64)
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    nq, k = slots.shape
    if int_ids is not None:
        int_ids = np.ascontiguousarray(int_ids, dtype=np.int64)
        ids_ptr, n_ids = int_ids.ctypes.data, len(int_ids)
    else:
        ids_ptr, n_ids = None, 0
    return fn(hit_type, slots.ctypes.data, scores.ctypes.data, nq, k, ids_ptr, n_ids, id_list, payloads)

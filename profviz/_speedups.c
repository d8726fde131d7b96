/* profviz._speedups: the WSGI middleware's request-path hot spots, in C.
 *
 * Optional: setup.py builds it when a C compiler is there; without it (or with
 * PROFVIZ_NO_SPEEDUPS=1, see profviz/accel.py) profviz uses the pure Python versions, which
 * behave the same and pass the same tests (tests/speedups_support.py, tests/test_speedups.py).
 * Python version of each piece: RequestFields -> profviz.wsgi._RequestFieldsPython,
 * start_request / stop_clocks -> profviz.wsgi._start_request_python / _stop_clocks_python,
 * observe_response -> profviz.wsgi._observe_response_python, walk_fresh ->
 * profviz.collect.sampler._walk_fresh_python.
 *
 * RequestFields: the base class of profviz.wsgi.RequestInfo. Its fields (field_names below)
 *   are member descriptors over a C array, set to their defaults at creation: the request path
 *   and the writer read and write them without a dict. Its _observed_start_response(status,
 *   headers, exc_info=None) is the start_response the app gets: it calls the server's
 *   (_start_response) with the same arguments (exc_info only when given), keeps the server's
 *   write() as _write and the status as status_line, and returns _counting_write, which counts
 *   len(data) into response_bytes and calls the server's write().
 *
 * observe_response(app_iter, info, recorder, sized): the app's response iterable, observed.
 *   Iterating it counts each chunk's len() into info.response_bytes and ends the request
 *   (recorder.finish(info), or recorder.finish(info, exc) when the app raises) when the chunks
 *   run out. close() closes the app's iterable (lists and tuples have nothing to close), then
 *   ends the request if it has not ended. A response dropped half-way through its iteration
 *   without close() ends the request as it is collected. With sized true, len() is the app
 *   iterable's len() (servers use it to set Content-Length).
 *
 * start_request(cls, environ, counter, thread_ids, native_thread_id, environ_key): a new cls
 *   (a RequestFields subclass) for the request of dict environ, with environ (the dict), method
 *   (REQUEST_METHOD, or "GET"), path (SCRIPT_NAME + PATH_INFO, or "/"), _seq (next(counter)),
 *   _ident (threading.get_ident()), tid (thread_ids.tid, or native_thread_id() when thread_ids
 *   has none), then _mono_start (time.perf_counter_ns()) and _cpu_start (time.thread_time_ns())
 *   set; stored as environ[environ_key] and returned.
 *
 * stop_clocks(info, other_thread_cpu_ns): sets info.duration_ns (perf_counter_ns() minus
 *   info._mono_start) and info.cpu_ns (the thread's CPU time since info._cpu_start, at least
 *   0). On a thread other than info._ident, the CPU time is other_thread_cpu_ns(info._ident)
 *   (None: unknown, 0).
 *
 * walk_fresh(leaf, held, fresh, codes, offsets): from frame leaf down through f_back, until a
 *   frame that is a key of dict held (or the stack's end): appends each frame, its f_code and
 *   its f_lasti to the three lists, leaf first; returns the held frame met, or None.
 *   The caller holds the GIL throughout (nothing here can release it).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <structmember.h>

static PyObject *str_finish, *str_finished, *str_response_bytes, *str_close, *str_counting_write;
static PyObject *str_tid, *str_REQUEST_METHOD, *str_SCRIPT_NAME, *str_PATH_INFO, *str_GET, *str_slash, *str_empty,
    *empty_tuple;
static PyObject *perf_counter_ns, *thread_time_ns, *zero;  /* time's functions, called as Python calls them */

/* RequestFields: the fields of profviz.wsgi.RequestInfo (its base class) as a C struct, so that
 * the request path and the writer read and write them without a dict. Each is an object that
 * is never NULL (deleting one makes it unreadable until set again). */
enum {
    F_ENVIRON, F_METHOD, F_PATH, F_ROUTE, F_THREAD_NAME, F_DEEP, F_STATUS_LINE, F_RESPONSE_BYTES, F_FINISHED,
    F_DURATION_NS, F_CPU_NS, F_ERROR, F_TID, F_SEQ, F_IDENT, F_MONO_START, F_CPU_START, F_SLOT, F_PREVIOUS_SLOT,
    F_PROFILER, F_SAMPLES, F_DEEP_RESULT, F_STATUS, F_LABELS, F_START_RESPONSE, F_WRITE, FIELD_COUNT
};

static const char *field_names[FIELD_COUNT] = {
    "environ", "method", "path", "route", "thread_name", "deep", "status_line", "response_bytes", "finished",
    "duration_ns", "cpu_ns", "error", "tid", "_seq", "_ident", "_mono_start", "_cpu_start", "_slot", "_previous_slot",
    "_profiler", "_samples", "_deep_result", "_status", "_labels", "_start_response", "_write",
};

static PyObject *field_defaults[FIELD_COUNT];  /* set at module init: None, False, 0, "" or () */

typedef struct {
    PyObject_HEAD
    PyObject *fields[FIELD_COUNT];
} RequestFields;

static PyTypeObject RequestFieldsType;

#define FIELD(info, index) (((RequestFields *)(info))->fields[index])

/* The field (a borrowed reference), or NULL with AttributeError set when Python code deleted it. */
static PyObject *
get_field(PyObject *info, int index)
{
    PyObject *value = FIELD(info, index);
    if (value == NULL)
        PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute '%s' (it was deleted)",
                     Py_TYPE(info)->tp_name, field_names[index]);
    return value;
}

/* Stores value (a new reference, or NULL with an error set) in the field, dropping the old one. */
static int
set_field(PyObject *info, int index, PyObject *value)
{
    if (value == NULL)
        return -1;
    Py_SETREF(FIELD(info, index), value);
    return 0;
}

static PyObject *
new_request_fields(PyTypeObject *type)
{
    PyObject *self = type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    for (int i = 0; i < FIELD_COUNT; i++)
        FIELD(self, i) = Py_NewRef(field_defaults[i]);
    return self;
}

static PyObject *
request_fields_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) || (kwargs != NULL && PyDict_GET_SIZE(kwargs))) {
        PyErr_Format(PyExc_TypeError, "%.100s() takes no arguments", type->tp_name);
        return NULL;
    }
    return new_request_fields(type);
}

static int
request_fields_traverse(PyObject *self, visitproc visit, void *arg)
{
    for (int i = 0; i < FIELD_COUNT; i++)
        Py_VISIT(FIELD(self, i));
    return 0;
}

static int
request_fields_clear(PyObject *self)
{
    for (int i = 0; i < FIELD_COUNT; i++)
        Py_CLEAR(FIELD(self, i));
    return 0;
}

static void
request_fields_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    request_fields_clear(self);
    Py_TYPE(self)->tp_free(self);
}

/* start_response(status, headers, exc_info=None) as the app sees it: calls the server's
 * (_start_response) with the same arguments (exc_info only when given), keeps the server's
 * write() as _write, the status as status_line, and returns _counting_write. */
static PyObject *
observed_start_response(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const parameters[3] = {"status", "headers", "exc_info"};
    PyObject *given[3] = {NULL, NULL, NULL};
    if (nargs > 3) {
        PyErr_Format(PyExc_TypeError, "start_response() takes at most 3 arguments (%zd given)", nargs);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        given[i] = args[i];
    Py_ssize_t keywords = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < keywords; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        int index = -1;
        for (int i = 0; i < 3; i++)
            if (PyUnicode_CompareWithASCIIString(name, parameters[i]) == 0)
                index = i;
        if (index < 0 || given[index] != NULL) {
            PyErr_Format(PyExc_TypeError, index < 0 ? "start_response() got an unexpected keyword argument '%U'"
                                                    : "start_response() got multiple values for argument '%U'", name);
            return NULL;
        }
        given[index] = args[nargs + k];
    }
    if (given[0] == NULL || given[1] == NULL) {
        PyErr_SetString(PyExc_TypeError, "start_response() needs status and headers");
        return NULL;
    }
    PyObject *call_args[3] = {given[0], given[1], given[2]};
    size_t count = given[2] == NULL || given[2] == Py_None ? 2 : 3;
    PyObject *server_start_response = get_field(self, F_START_RESPONSE);
    if (server_start_response == NULL)
        return NULL;
    PyObject *write = PyObject_Vectorcall(server_start_response, call_args, count, NULL);
    if (write == NULL)
        return NULL;
    set_field(self, F_WRITE, write);
    set_field(self, F_STATUS_LINE, Py_NewRef(given[0]));
    return PyObject_GetAttr(self, str_counting_write);
}

/* write(data) as the app sees it: counts len(data) into response_bytes, then calls the server's write(). */
static PyObject *
counting_write(PyObject *self, PyObject *data)
{
    Py_ssize_t size = PyObject_Size(data);
    if (size < 0)
        return NULL;
    PyObject *before = get_field(self, F_RESPONSE_BYTES), *server_write = get_field(self, F_WRITE);
    if (before == NULL || server_write == NULL)
        return NULL;
    PyObject *added = PyLong_FromSsize_t(size);
    if (added == NULL || set_field(self, F_RESPONSE_BYTES, PyNumber_Add(before, added)) < 0) {
        Py_XDECREF(added);
        return NULL;
    }
    Py_DECREF(added);
    return PyObject_CallOneArg(server_write, data);
}

static PyMethodDef request_fields_methods[] = {
    {"_observed_start_response", (PyCFunction)(void (*)(void))observed_start_response, METH_FASTCALL | METH_KEYWORDS,
     "The server's start_response, called through with the same arguments; notes the status and returns _counting_write."},
    {"_counting_write", (PyCFunction)counting_write, METH_O, "The server's write(), counting the bytes."},
    {NULL},
};

static PyMemberDef request_fields_members[FIELD_COUNT + 1];  /* filled at module init from field_names */

static PyTypeObject RequestFieldsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "profviz._speedups.RequestFields",
    .tp_doc = "The fields of profviz.wsgi.RequestInfo, stored in C (its base class when the extension is built).",
    .tp_basicsize = sizeof(RequestFields),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = request_fields_new,
    .tp_dealloc = request_fields_dealloc,
    .tp_traverse = request_fields_traverse,
    .tp_clear = request_fields_clear,
    .tp_members = request_fields_members,
    .tp_methods = request_fields_methods,
};

typedef struct {
    PyObject_HEAD
    PyObject *app_iter;
    PyObject *info;
    PyObject *recorder;
    PyObject *chunks;   /* iter(app_iter), once iteration has started */
    int state;          /* 0: not iterated yet, 1: iterating, 2: chunks ended or raised */
} ObservedResponse;

/* SizedObservedResponseType: the same type with a len() (servers use it to set Content-Length),
 * a copy of ObservedResponseType made at module init before either is readied. */
static PyTypeObject ObservedResponseType, SizedObservedResponseType;

/* recorder.finish(info) or recorder.finish(info, error); 0, or -1 with the call's error set. */
static int
finish(ObservedResponse *self, PyObject *error)
{
    PyObject *args[3] = {self->recorder, self->info, error};
    PyObject *result = PyObject_VectorcallMethod(
        str_finish, args, (error == NULL ? 2 : 3) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* With an exception set: end the request with it, and leave it set (or finish()'s own error). */
static void
finish_with_raised(ObservedResponse *self)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL && value != NULL)
        PyException_SetTraceback(value, traceback);
    if (finish(self, value != NULL ? value : Py_None) < 0) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(traceback);
        return;
    }
    PyErr_Restore(type, value, traceback);
}

static int
add_response_bytes(PyObject *info, Py_ssize_t size)
{
    int fields = PyObject_TypeCheck(info, &RequestFieldsType);
    PyObject *before = fields ? Py_XNewRef(get_field(info, F_RESPONSE_BYTES)) : PyObject_GetAttr(info, str_response_bytes);
    if (before == NULL)
        return -1;
    PyObject *added = PyLong_FromSsize_t(size);
    if (added == NULL) {
        Py_DECREF(before);
        return -1;
    }
    PyObject *after = PyNumber_Add(before, added);
    Py_DECREF(before);
    Py_DECREF(added);
    if (after == NULL)
        return -1;
    if (fields)
        return set_field(info, F_RESPONSE_BYTES, after);
    int failed = PyObject_SetAttr(info, str_response_bytes, after);
    Py_DECREF(after);
    return failed;
}

static PyObject *
response_iternext(ObservedResponse *self)
{
    if (self->state == 2)
        return NULL;
    if (self->state == 0) {
        self->chunks = PyObject_GetIter(self->app_iter);
        if (self->chunks == NULL)
            goto raised;
        self->state = 1;
    }
    PyObject *chunk = PyIter_Next(self->chunks);
    if (chunk != NULL) {
        Py_ssize_t size = PyObject_Size(chunk);
        if (size < 0 || add_response_bytes(self->info, size) < 0) {
            Py_DECREF(chunk);
            goto raised;
        }
        return chunk;
    }
    if (PyErr_Occurred())
        goto raised;
    self->state = 2;
    finish(self, NULL);
    return NULL;
raised:
    self->state = 2;
    finish_with_raised(self);
    return NULL;
}

static PyObject *
response_iter(PyObject *self)
{
    return Py_NewRef(self);
}

static PyObject *
response_close(ObservedResponse *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *app_iter = self->app_iter;
    if (!PyList_CheckExact(app_iter) && !PyTuple_CheckExact(app_iter)) {
        PyObject *close = PyObject_GetAttr(app_iter, str_close);
        if (close == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                goto raised;
            PyErr_Clear();
        }
        else {
            PyObject *result = PyObject_CallNoArgs(close);
            Py_DECREF(close);
            if (result == NULL)
                goto raised;
            Py_DECREF(result);
        }
    }
    PyObject *finished = PyObject_TypeCheck(self->info, &RequestFieldsType) ? Py_XNewRef(get_field(self->info, F_FINISHED))
                                                                           : PyObject_GetAttr(self->info, str_finished);
    if (finished == NULL)
        return NULL;
    int done = PyObject_IsTrue(finished);
    Py_DECREF(finished);
    if (done < 0 || (!done && finish(self, NULL) < 0))
        return NULL;
    Py_RETURN_NONE;
raised:
    finish_with_raised(self);
    return NULL;
}

static void
response_finalize(ObservedResponse *self)
{
    if (self->state != 1 || self->recorder == NULL)
        return;
    self->state = 2;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    if (finish(self, NULL) < 0)
        PyErr_WriteUnraisable((PyObject *)self);
    PyErr_Restore(type, value, traceback);
}

static int
response_traverse(ObservedResponse *self, visitproc visit, void *arg)
{
    Py_VISIT(self->app_iter);
    Py_VISIT(self->info);
    Py_VISIT(self->recorder);
    Py_VISIT(self->chunks);
    return 0;
}

static int
response_clear(ObservedResponse *self)
{
    Py_CLEAR(self->app_iter);
    Py_CLEAR(self->info);
    Py_CLEAR(self->recorder);
    Py_CLEAR(self->chunks);
    return 0;
}

static void
response_dealloc(ObservedResponse *self)
{
    if (PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0)
        return;  /* resurrected */
    PyObject_GC_UnTrack(self);
    response_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t
response_len(ObservedResponse *self)
{
    return PyObject_Size(self->app_iter);
}

static PyMethodDef response_methods[] = {
    {"close", (PyCFunction)response_close, METH_NOARGS, "Close the app's iterable, then end the request if it has not ended."},
    {NULL},
};

static PyObject *
response_get_app_iter(ObservedResponse *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->app_iter != NULL ? self->app_iter : Py_None);
}

static PyGetSetDef response_getset[] = {
    {"app_iter", (getter)response_get_app_iter, NULL, "The app's response iterable.", NULL},
    {NULL},
};

static PySequenceMethods sized_as_sequence = {
    .sq_length = (lenfunc)response_len,
};

static PyTypeObject ObservedResponseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "profviz._speedups.ObservedResponse",
    .tp_doc = "The app's response iterable, observed by profviz (see observe_response).",
    .tp_basicsize = sizeof(ObservedResponse),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)response_dealloc,
    .tp_traverse = (traverseproc)response_traverse,
    .tp_clear = (inquiry)response_clear,
    .tp_finalize = (destructor)response_finalize,
    .tp_iter = response_iter,
    .tp_iternext = (iternextfunc)response_iternext,
    .tp_methods = response_methods,
    .tp_getset = response_getset,
};

static PyObject *
observe_response(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "observe_response() takes 4 arguments (app_iter, info, recorder, sized), got %zd", nargs);
        return NULL;
    }
    int sized = PyObject_IsTrue(args[3]);
    if (sized < 0)
        return NULL;
    ObservedResponse *self = PyObject_GC_New(ObservedResponse, sized ? &SizedObservedResponseType : &ObservedResponseType);
    if (self == NULL)
        return NULL;
    self->app_iter = Py_NewRef(args[0]);
    self->info = Py_NewRef(args[1]);
    self->recorder = Py_NewRef(args[2]);
    self->chunks = NULL;
    self->state = 0;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* environ[key] when it is there and true, else fallback; a new reference, or NULL with an error set. */
static PyObject *
environ_get_or(PyObject *environ, PyObject *key, PyObject *fallback)
{
    PyObject *value = PyDict_GetItemWithError(environ, key);
    if (value == NULL) {
        if (PyErr_Occurred())
            return NULL;
        return Py_NewRef(fallback);
    }
    int truth = PyObject_IsTrue(value);
    if (truth < 0)
        return NULL;
    return Py_NewRef(truth ? value : fallback);
}

static PyObject *
start_request(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError,
                     "start_request() takes 6 arguments (cls, environ, counter, thread_ids, native_thread_id, environ_key), got %zd", nargs);
        return NULL;
    }
    PyObject *cls = args[0], *environ = args[1], *counter = args[2], *thread_ids = args[3], *native_thread_id = args[4];
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &RequestFieldsType) || !PyDict_Check(environ)) {
        PyErr_Format(PyExc_TypeError, "start_request() needs a RequestFields class and a dict environ, got %.100s and %.100s",
                     PyType_Check(cls) ? ((PyTypeObject *)cls)->tp_name : Py_TYPE(cls)->tp_name, Py_TYPE(environ)->tp_name);
        return NULL;
    }
    PyObject *info = new_request_fields((PyTypeObject *)cls);
    if (info == NULL)
        return NULL;
    PyObject *script = NULL, *path_info = NULL, *path = NULL;
    set_field(info, F_ENVIRON, Py_NewRef(environ));
    if (set_field(info, F_METHOD, environ_get_or(environ, str_REQUEST_METHOD, str_GET)) < 0)
        goto error;
    script = environ_get_or(environ, str_SCRIPT_NAME, str_empty);
    path_info = script == NULL ? NULL : environ_get_or(environ, str_PATH_INFO, str_empty);
    if (path_info == NULL)
        goto error;
    path = PyNumber_Add(script, path_info);
    if (path == NULL)
        goto error;
    int truth = PyObject_IsTrue(path);
    if (truth < 0)
        goto error;
    set_field(info, F_PATH, Py_NewRef(truth ? path : str_slash));
    PyObject *seq = PyIter_Next(counter);
    if (seq == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_RuntimeError, "start_request(): the request counter ran out");
    if (set_field(info, F_SEQ, seq) < 0 ||
        set_field(info, F_IDENT, PyLong_FromUnsignedLong(PyThread_get_thread_ident())) < 0)
        goto error;
    PyObject *tid = PyObject_GetAttr(thread_ids, str_tid);
    if (tid == Py_None || (tid == NULL && PyErr_ExceptionMatches(PyExc_AttributeError))) {
        PyErr_Clear();
        Py_XDECREF(tid);
        tid = PyObject_CallNoArgs(native_thread_id);
    }
    if (set_field(info, F_TID, tid) < 0 ||
        set_field(info, F_MONO_START, PyObject_CallNoArgs(perf_counter_ns)) < 0 ||
        set_field(info, F_CPU_START, PyObject_CallNoArgs(thread_time_ns)) < 0 ||
        PyObject_SetItem(environ, args[5], info) < 0)
        goto error;
    Py_DECREF(script);
    Py_DECREF(path_info);
    Py_DECREF(path);
    return info;
error:
    Py_XDECREF(script);
    Py_XDECREF(path_info);
    Py_XDECREF(path);
    Py_DECREF(info);
    return NULL;
}

static PyObject *
stop_clocks(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "stop_clocks() takes 2 arguments (info, other_thread_cpu_ns), got %zd", nargs);
        return NULL;
    }
    PyObject *info = args[0];
    if (!PyObject_TypeCheck(info, &RequestFieldsType)) {
        PyErr_Format(PyExc_TypeError, "stop_clocks() needs a RequestFields, got %.100s", Py_TYPE(info)->tp_name);
        return NULL;
    }
    PyObject *mono_start = get_field(info, F_MONO_START), *cpu_start = get_field(info, F_CPU_START);
    PyObject *ident = get_field(info, F_IDENT);
    if (mono_start == NULL || cpu_start == NULL || ident == NULL)
        return NULL;
    unsigned long started_on = PyLong_AsUnsignedLong(ident);
    if (started_on == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    Py_INCREF(cpu_start);  /* the calls below run Python code, which may set the fields */
    Py_INCREF(ident);
    PyObject *now = PyObject_CallNoArgs(perf_counter_ns), *cpu = NULL;
    if (now == NULL || set_field(info, F_DURATION_NS, PyNumber_Subtract(now, mono_start)) < 0)
        goto done;
    PyObject *cpu_now = started_on == PyThread_get_thread_ident() ? PyObject_CallNoArgs(thread_time_ns)
                                                                  : PyObject_CallOneArg(args[1], ident);
    if (cpu_now == NULL)
        goto done;
    cpu = cpu_now == Py_None ? Py_NewRef(zero) : PyNumber_Subtract(cpu_now, cpu_start);  /* None: unreadable */
    Py_DECREF(cpu_now);
    if (cpu == NULL)
        goto done;
    int negative = PyObject_RichCompareBool(cpu, zero, Py_LT);
    if (negative < 0)
        Py_CLEAR(cpu);
    else if (negative)
        Py_SETREF(cpu, Py_NewRef(zero));
done:
    Py_XDECREF(now);
    Py_DECREF(cpu_start);
    Py_DECREF(ident);
    if (cpu == NULL || set_field(info, F_CPU_NS, cpu) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int
append_frame(PyFrameObject *frame, PyObject *fresh, PyObject *codes, PyObject *offsets)
{
    if (PyList_Append(fresh, (PyObject *)frame) < 0)
        return -1;
    PyCodeObject *code = PyFrame_GetCode(frame);
    int failed = PyList_Append(codes, (PyObject *)code);
    Py_DECREF(code);
    if (failed)
        return -1;
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *offset = PyLong_FromLong(PyFrame_GetLasti(frame));
#else
    PyObject *offset = PyObject_GetAttrString((PyObject *)frame, "f_lasti");
#endif
    if (offset == NULL)
        return -1;
    failed = PyList_Append(offsets, offset);
    Py_DECREF(offset);
    return failed;
}

static PyObject *
walk_fresh(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "walk_fresh() takes 5 arguments (leaf, held, fresh, codes, offsets), got %zd", nargs);
        return NULL;
    }
    PyObject *held = args[1], *fresh = args[2], *codes = args[3], *offsets = args[4];
    if (!PyDict_Check(held) || !PyList_Check(fresh) || !PyList_Check(codes) || !PyList_Check(offsets)) {
        PyErr_SetString(PyExc_TypeError, "walk_fresh() needs a dict of held frames and three lists");
        return NULL;
    }
    if (args[0] == Py_None)
        Py_RETURN_NONE;
    if (!PyFrame_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "walk_fresh() needs a frame or None, got %.100s", Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    PyFrameObject *frame = (PyFrameObject *)Py_NewRef(args[0]);
    while (frame != NULL) {
        int is_held = PyDict_Contains(held, (PyObject *)frame);
        if (is_held < 0) {
            Py_DECREF(frame);
            return NULL;
        }
        if (is_held)
            return (PyObject *)frame;
        if (append_frame(frame, fresh, codes, offsets) < 0) {
            Py_DECREF(frame);
            return NULL;
        }
        PyFrameObject *back = PyFrame_GetBack(frame);
        Py_DECREF(frame);
        frame = back;
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"observe_response", (PyCFunction)(void (*)(void))observe_response, METH_FASTCALL,
     "observe_response(app_iter, info, recorder, sized): the app's response, observed (see the module's source)."},
    {"start_request", (PyCFunction)(void (*)(void))start_request, METH_FASTCALL,
     "start_request(cls, environ, counter, thread_ids, native_thread_id, environ_key) -> a new cls instance (see the module's source)."},
    {"stop_clocks", (PyCFunction)(void (*)(void))stop_clocks, METH_FASTCALL,
     "stop_clocks(info, other_thread_cpu_ns): sets info.duration_ns and info.cpu_ns (see the module's source)."},
    {"walk_fresh", (PyCFunction)(void (*)(void))walk_fresh, METH_FASTCALL,
     "walk_fresh(leaf, held, fresh, codes, offsets) -> the held frame met, or None (see the module's source)."},
    {NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "profviz._speedups",
    .m_doc = "C versions of the WSGI middleware's request-path hot spots (optional; see profviz.wsgi).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    SizedObservedResponseType = ObservedResponseType;
    SizedObservedResponseType.tp_name = "profviz._speedups.SizedObservedResponse";
    SizedObservedResponseType.tp_doc = "An observed response whose app iterable has a len() (see observe_response).";
    SizedObservedResponseType.tp_as_sequence = &sized_as_sequence;
    if (PyType_Ready(&ObservedResponseType) < 0 || PyType_Ready(&SizedObservedResponseType) < 0)
        return NULL;
    struct { PyObject **slot; const char *text; } names[] = {
        {&str_finish, "finish"}, {&str_finished, "finished"}, {&str_response_bytes, "response_bytes"},
        {&str_close, "close"}, {&str_counting_write, "_counting_write"},
        {&str_tid, "tid"}, {&str_REQUEST_METHOD, "REQUEST_METHOD"},
        {&str_SCRIPT_NAME, "SCRIPT_NAME"}, {&str_PATH_INFO, "PATH_INFO"}, {&str_GET, "GET"}, {&str_slash, "/"},
        {&str_empty, ""},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].text);
        if (*names[i].slot == NULL)
            return NULL;
    }
    zero = PyLong_FromLong(0);
    empty_tuple = PyTuple_New(0);
    if (zero == NULL || empty_tuple == NULL)
        return NULL;
    for (int i = 0; i < FIELD_COUNT; i++) {
        request_fields_members[i] = (PyMemberDef){
            (char *)field_names[i], T_OBJECT_EX, offsetof(RequestFields, fields) + i * sizeof(PyObject *), 0, NULL};
        switch (i) {
        case F_DEEP: case F_FINISHED: field_defaults[i] = Py_False; break;
        case F_RESPONSE_BYTES: case F_TID: case F_SEQ: case F_IDENT: case F_MONO_START: case F_CPU_START: case F_STATUS:
            field_defaults[i] = zero; break;
        case F_THREAD_NAME: field_defaults[i] = str_empty; break;
        case F_SAMPLES: field_defaults[i] = empty_tuple; break;
        case F_METHOD: field_defaults[i] = str_GET; break;
        case F_PATH: field_defaults[i] = str_slash; break;
        default: field_defaults[i] = Py_None;
        }
    }
    if (PyType_Ready(&RequestFieldsType) < 0)
        return NULL;
    PyObject *time_module = PyImport_ImportModule("time");
    if (time_module == NULL)
        return NULL;
    perf_counter_ns = PyObject_GetAttrString(time_module, "perf_counter_ns");
    thread_time_ns = PyObject_GetAttrString(time_module, "thread_time_ns");
    Py_DECREF(time_module);
    if (perf_counter_ns == NULL || thread_time_ns == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "ObservedResponse", (PyObject *)&ObservedResponseType) < 0 ||
        PyModule_AddObjectRef(module, "SizedObservedResponse", (PyObject *)&SizedObservedResponseType) < 0 ||
        PyModule_AddObjectRef(module, "RequestFields", (PyObject *)&RequestFieldsType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

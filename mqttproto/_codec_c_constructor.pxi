# Part of mqttproto/_codec_c.pyx, which includes its parts in order (one
# extension module, one C file).
#
# The C constructor of PublishPacket (its type's vectorcall slot).


cdef extern from *:
    """
    /* A C constructor for PublishPacket: the type object's own vectorcall
       slot, which CPython calls for PublishPacket(...) (as for list(...))
       before the generic type call, which builds an argument tuple and a
       keyword dict and runs the Python __init__ in a frame. It stores
       exactly what packets.PublishPacket.__init__ stores: topic, payload and
       qos always, any other field when it is not that field's default (by
       identity), converting a user_properties or subscription_identifiers
       that is not an exact tuple with the reference's own converters. Any
       call it does not understand -- too many positional arguments, an
       unknown or repeated keyword, no topic -- takes the generic path, so
       that the Python __init__ raises its own TypeError. Subclasses do not
       inherit the slot. */
    #define MQTTPROTO_PUBLISH_FIELDS 14
    #define MQTTPROTO_PUBLISH_POSITIONAL 6
    #define MQTTPROTO_USER_PROPERTIES 11
    #define MQTTPROTO_SUBSCRIPTION_IDENTIFIERS 12
    static PyTypeObject *mqttproto_publish_type = NULL;
    static PyObject *mqttproto_publish_names[MQTTPROTO_PUBLISH_FIELDS];
    static PyObject *mqttproto_publish_defaults[MQTTPROTO_PUBLISH_FIELDS];
    static PyObject *mqttproto_publish_converters[2];
    static PyObject *mqttproto_publish_kwnames = NULL;
    static unsigned char mqttproto_publish_index[MQTTPROTO_PUBLISH_FIELDS];

    static PyObject *mqttproto_publish_generic(
        PyObject *type, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames
    ) {
        /* What CPython does without the slot: type.__call__(args, kwargs). */
        PyObject *tuple, *kwargs = NULL, *result;
        Py_ssize_t i, count = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
        tuple = PyTuple_New(nargs);
        if (tuple == NULL) return NULL;
        for (i = 0; i < nargs; i++) {
            Py_INCREF(args[i]);
            PyTuple_SET_ITEM(tuple, i, args[i]);
        }
        if (count) {
            kwargs = PyDict_New();
            if (kwargs == NULL) { Py_DECREF(tuple); return NULL; }
            for (i = 0; i < count; i++) {
                if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
                    Py_DECREF(tuple); Py_DECREF(kwargs); return NULL;
                }
            }
        }
        result = PyType_Type.tp_call(type, tuple, kwargs);
        Py_DECREF(tuple);
        Py_XDECREF(kwargs);
        return result;
    }

    static PyObject *mqttproto_publish_vectorcall(
        PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames
    ) {
        PyObject *values[MQTTPROTO_PUBLISH_FIELDS] = {NULL};
        PyObject *obj, *fields, *value, *converted;
        Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
        Py_ssize_t i, j, count;
        if ((PyTypeObject *)type != mqttproto_publish_type
                || nargs > MQTTPROTO_PUBLISH_POSITIONAL) {
            return mqttproto_publish_generic(type, args, nargs, kwnames);
        }
        for (i = 0; i < nargs; i++) values[i] = args[i];
        count = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
        if (count && kwnames != mqttproto_publish_kwnames) {
            /* Keyword names are interned (code constants, attrs' field
               names): matched by identity; anything else is generic. A call
               site passes the same kwnames tuple every time, so the last
               one's field indexes are kept (with a reference to it, so that
               its identity stays its own). */
            unsigned char index[MQTTPROTO_PUBLISH_FIELDS];
            if (count > MQTTPROTO_PUBLISH_FIELDS) {
                return mqttproto_publish_generic(type, args, nargs, kwnames);
            }
            for (i = 0; i < count; i++) {
                PyObject *key = PyTuple_GET_ITEM(kwnames, i);
                for (j = 0; j < MQTTPROTO_PUBLISH_FIELDS; j++) {
                    if (key == mqttproto_publish_names[j]) break;
                }
                if (j == MQTTPROTO_PUBLISH_FIELDS) {
                    return mqttproto_publish_generic(type, args, nargs, kwnames);
                }
                index[i] = (unsigned char)j;
            }
            Py_INCREF(kwnames);
            Py_XSETREF(mqttproto_publish_kwnames, kwnames);
            memcpy(mqttproto_publish_index, index, (size_t)count);
        }
        for (i = 0; i < count; i++) {
            j = mqttproto_publish_index[i];
            if (values[j] != NULL) {  /* given twice: the generic path says so */
                return mqttproto_publish_generic(type, args, nargs, kwnames);
            }
            values[j] = args[nargs + i];
        }
        if (values[0] == NULL) return mqttproto_publish_generic(type, args, nargs, kwnames);
        obj = PyBaseObject_Type.tp_new((PyTypeObject *)type, mqttproto_empty_tuple, NULL);
        if (obj == NULL) return NULL;
        /* Into the instance dict, as the Python __init__ stores (the fields
           have no descriptors: their class attributes are the defaults);
           the encoder reads that dict next. */
        fields = PyObject_GenericGetDict(obj, NULL);
        if (fields == NULL) { Py_DECREF(obj); return NULL; }
        for (i = 0; i < MQTTPROTO_PUBLISH_FIELDS; i++) {
            value = values[i];
            if (i < 3) {
                if (value == NULL) value = mqttproto_publish_defaults[i];
            }
            else if (value == NULL || value == mqttproto_publish_defaults[i]) {
                continue;
            }
            if ((i == MQTTPROTO_USER_PROPERTIES || i == MQTTPROTO_SUBSCRIPTION_IDENTIFIERS)
                    && !PyTuple_CheckExact(value)) {
                converted = PyObject_CallOneArg(
                    mqttproto_publish_converters[i - MQTTPROTO_USER_PROPERTIES], value);
                if (converted == NULL) { Py_DECREF(fields); Py_DECREF(obj); return NULL; }
                j = PyDict_SetItem(fields, mqttproto_publish_names[i], converted);
                Py_DECREF(converted);
            }
            else {
                j = PyDict_SetItem(fields, mqttproto_publish_names[i], value);
            }
            if (j < 0) { Py_DECREF(fields); Py_DECREF(obj); return NULL; }
        }
        Py_DECREF(fields);
        return obj;
    }

    static int mqttproto_publish_setup(
        PyObject *type, PyObject *names, PyObject *defaults, PyObject *pairs, PyObject *ints
    ) {
        Py_ssize_t i;
        if (mqttproto_empty_tuple == NULL) {
            mqttproto_empty_tuple = PyTuple_New(0);
            if (mqttproto_empty_tuple == NULL) return -1;
        }
        for (i = 0; i < MQTTPROTO_PUBLISH_FIELDS; i++) {
            Py_INCREF(PyTuple_GET_ITEM(names, i));
            mqttproto_publish_names[i] = PyTuple_GET_ITEM(names, i);
            Py_INCREF(PyTuple_GET_ITEM(defaults, i));
            mqttproto_publish_defaults[i] = PyTuple_GET_ITEM(defaults, i);
        }
        Py_INCREF(pairs);
        mqttproto_publish_converters[0] = pairs;
        Py_INCREF(ints);
        mqttproto_publish_converters[1] = ints;
        Py_INCREF(type);
        mqttproto_publish_type = (PyTypeObject *)type;
        return 0;
    }

    static int mqttproto_publish_constructor(int on) {
        int was = mqttproto_publish_type->tp_vectorcall == mqttproto_publish_vectorcall;
        mqttproto_publish_type->tp_vectorcall = on ? mqttproto_publish_vectorcall : NULL;
        return was;
    }
    """
    int _publish_setup "mqttproto_publish_setup"(
        object cls, tuple names, tuple defaults, object pairs, object ints
    ) except -1
    bint _publish_constructor "mqttproto_publish_constructor"(int on)

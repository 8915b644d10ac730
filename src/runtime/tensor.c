/* Tensor descriptors: sizes and the argument checks every operation shares. */
#include "bf16.h"
#include "internal.h"

#include <stdio.h>
#include <string.h>

int64_t ai3_tensor_numel(const ai3_tensor *t) {
    int64_t n = 1;
    if (!t) return 0;
    /* wrapping (unsigned) products: a descriptor not yet checked may have
     * any sizes, and ai3_check_tensor refuses those whose product is large */
    for (int i = 0; i < t->ndim && i < AI3_MAX_DIMS; i++)
        n = (int64_t)((uint64_t)n * (uint64_t)t->shape[i]);
    return n;
}

size_t ai3_dtype_size(ai3_dtype dtype) {
    return dtype == AI3_FLOAT64 ? 8 : dtype == AI3_FLOAT32 ? 4 : 2;
}

const char *ai3_dtype_name(ai3_dtype dtype) {
    static const char *const names[] = {"float32", "float64", "float16", "bfloat16"};
    return (unsigned)dtype < 4 ? names[dtype] : "unknown dtype";
}

void ai3_device_label(ai3_device device, int index, char *buf, size_t size) {
    if (device == AI3_DEVICE_CUDA)
        snprintf(buf, size, "cuda:%d", index);
    else
        snprintf(buf, size, "%s", ai3_device_name(device));
}

ai3_tensor ai3_batched_4d(const ai3_tensor *t) {
    ai3_tensor v = *t;
    /* an empty tensor may come without data; kernels form (and never
     * follow) pointers into it, and arithmetic on NULL is undefined */
    if (!v.data) v.data = ai3_shape_only;
    if (t->ndim == 3) {
        v.ndim = 4;
        v.shape[0] = 1;
        for (int i = 1; i < 4; i++) v.shape[i] = t->shape[i - 1];
    }
    return v;
}

static void format_shape(const int64_t *shape, int ndim, char *buf, size_t size) {
    size_t used = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld",
                                 (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, ndim == 1 ? ",)" : ")");
}

char ai3_shape_only[1];

ai3_status ai3_tensor_copy(const ai3_tensor *src, ai3_tensor *dst) {
    size_t bytes = (size_t)ai3_tensor_numel(src) * ai3_dtype_size(src->dtype);
    *dst = *src;
    dst->data = ai3_alloc(bytes);
    if (!dst->data) return AI3_ERROR_OUT_OF_MEMORY;
    if (bytes) memcpy(dst->data, src->data, bytes);
    return AI3_OK;
}

ai3_status ai3_check_tensor(const ai3_tensor *t, const char *what, const char *op) {
    if (!t) return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: %s is NULL", op, what);
    if ((unsigned)t->dtype > AI3_BFLOAT16)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: %s has an unknown dtype code %d (float32, float64, float16 or "
                             "bfloat16 expected)", op, what, (int)t->dtype);
    if (t->device != AI3_DEVICE_CPU && t->device != AI3_DEVICE_CUDA)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: %s has an unknown device code %d",
                             op, what, (int)t->device);
    if (t->device == AI3_DEVICE_CPU && t->dtype == AI3_FLOAT16)
        return ai3_set_error(AI3_ERROR_UNSUPPORTED,
                             "%s: %s is float16; on the CPU ai3 computes in float32, float64 "
                             "and bfloat16 (float16 runs on CUDA devices)", op, what);
    if (t->device == AI3_DEVICE_CPU && t->dtype == AI3_BFLOAT16 && !ai3_cpu_has_bf16()) {
        char who[96];
        snprintf(who, sizeof who, "%s: %s", op, what);
        return ai3_require_cpu_bf16(who);
    }
    if (t->device == AI3_DEVICE_CUDA && t->device_index < 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: %s has device index %d", op,
                             what, t->device_index);
    if (t->ndim < 0 || t->ndim > AI3_MAX_DIMS)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: %s has %d dimensions (0 to %d allowed)",
                             op, what, t->ndim, AI3_MAX_DIMS);
    int64_t nonzero = 1; /* the product of the non-zero sizes */
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "%s: %s has a negative size %lld in dimension %d", op, what,
                                 (long long)t->shape[i], i);
        if (t->shape[i] > 0 && (nonzero = ai3_size_mul(nonzero, t->shape[i])) < 0)
            return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                                 "%s: %s is too large (more than 2^56 elements)", op, what);
    }
    if (!t->data && ai3_tensor_numel(t) > 0)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: %s has no data (NULL pointer)", op,
                             what);
    return AI3_OK;
}

ai3_status ai3_check_same_dtype(const ai3_tensor *a, const ai3_tensor *b, const char *op) {
    if (a->device != b->device ||
        (a->device == AI3_DEVICE_CUDA && a->device_index != b->device_index)) {
        char da[32], db[32];
        ai3_device_label(a->device, a->device_index, da, sizeof da);
        ai3_device_label(b->device, b->device_index, db, sizeof db);
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: all tensors must be on one device, got %s and %s", op, da, db);
    }
    if (a->dtype != b->dtype)
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: all tensors must have one dtype, got %s and %s", op,
                             ai3_dtype_name(a->dtype), ai3_dtype_name(b->dtype));
    return AI3_OK;
}

ai3_status ai3_check_output(const ai3_tensor *out, const ai3_tensor *like, int ndim,
                            const int64_t *shape, const char *op) {
    ai3_status s = ai3_check_tensor(out, "output", op);
    if (s != AI3_OK) return s;
    if (out->device != like->device ||
        (out->device == AI3_DEVICE_CUDA && out->device_index != like->device_index)) {
        char dout[32], din[32];
        ai3_device_label(out->device, out->device_index, dout, sizeof dout);
        ai3_device_label(like->device, like->device_index, din, sizeof din);
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT, "%s: output is on %s but input on %s",
                             op, dout, din);
    }
    ai3_dtype dtype = like->dtype;
    int same = out->ndim == ndim && out->dtype == dtype;
    for (int i = 0; same && i < ndim; i++) same = out->shape[i] == shape[i];
    if (!same) {
        char want[160], got[160];
        format_shape(shape, ndim, want, sizeof want);
        format_shape(out->shape, out->ndim, got, sizeof got);
        return ai3_set_error(AI3_ERROR_INVALID_ARGUMENT,
                             "%s: output must be %s %s, got %s %s", op, ai3_dtype_name(dtype),
                             want, ai3_dtype_name(out->dtype), got);
    }
    return AI3_OK;
}

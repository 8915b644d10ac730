/* The tensor operations of whole networks on CUDA (add, mul, cat, mean,
 * permute, layernorm, softmax): their parameters resolved on the host, then
 * one of ai3's own kernels (kernels.h), or strided copies for cat. */
#include "cuda.h"

#include <string.h>

static int64_t numel(const ai3_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* d in [-ndim, ndim) as [0, ndim). */
static int axis(int d, int ndim) { return d < 0 ? d + ndim : d; }

static ai3_status launched(cudaError_t err, const char *op) {
    return ai3_cuda_check(err, op, "the kernel");
}

/* add, mul: the operands' element strides along the output's dimensions
 * (aligned at the last one; 0 where an operand is broadcast). */
static ai3_status binary(const ai3_plan *plan, const ai3_tensor *a, const ai3_tensor *b,
                         ai3_tensor *out, cudaStream_t stream) {
    const char *op = plan->op == AI3_OP_ADD ? "add" : "mul";
    int nd = out->ndim < 1 ? 1 : out->ndim;
    int64_t shape[AI3_MAX_DIMS], strides[2][AI3_MAX_DIMS];
    const ai3_tensor *operand[2] = {a, b};
    for (int d = 0; d < nd; d++) shape[d] = out->ndim ? out->shape[d] : 1;
    for (int k = 0; k < 2; k++) {
        int64_t stride = 1;
        for (int d = nd - 1; d >= 0; d--) {
            int od = d - (nd - operand[k]->ndim); /* the operand's dimension, if any */
            int64_t size = od >= 0 ? operand[k]->shape[od] : 1;
            strides[k][d] = size == 1 && shape[d] != 1 ? 0 : stride;
            stride *= size;
        }
    }
    if (numel(out) == 0) return AI3_OK;
    return launched(ai3_cuda_binary(plan->op, a->dtype, a->data, strides[0], b->data, strides[1],
                                    out->data, nd, shape, stream),
                    op);
}

/* cat: each input's rows (outer × its size × inner) copied into its slot of
 * the output's rows, one 2-d copy per input. */
static ai3_status cat(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                      ai3_tensor *out, cudaStream_t stream) {
    int dim = axis(plan->params.cat.dim, out->ndim);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < dim; d++) outer *= out->shape[d];
    for (int d = dim + 1; d < out->ndim; d++) inner *= out->shape[d];
    size_t elem = ai3_cuda_dtype_size(out->dtype), row = (size_t)(out->shape[dim] * inner) * elem;
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t width = (size_t)(in[i]->shape[dim] * inner) * elem;
        if (width && outer) {
            ai3_status s = ai3_cuda_check(
                cudaMemcpy2DAsync((char *)out->data + at, row, in[i]->data, width, width,
                                  (size_t)outer, cudaMemcpyDeviceToDevice, stream),
                "cat", "copying an input");
            if (s != AI3_OK) return s;
        }
        at += width;
    }
    return AI3_OK;
}

/* A 0-d input's one element to the output. */
static ai3_status copy_one(const ai3_tensor *x, ai3_tensor *out, const char *op,
                           cudaStream_t stream) {
    return ai3_cuda_check(cudaMemcpyAsync(out->data, x->data, ai3_cuda_dtype_size(x->dtype),
                                          cudaMemcpyDeviceToDevice, stream),
                          op, "copying");
}

static ai3_status mean(const ai3_plan *plan, const ai3_tensor *x, ai3_tensor *out,
                       cudaStream_t stream) {
    const ai3_mean_params *p = &plan->params.mean;
    int reduce[AI3_MAX_DIMS] = {0};
    for (int d = 0; d < x->ndim; d++) reduce[d] = p->n_dims == 0;
    for (int i = 0; i < p->n_dims; i++) reduce[axis(p->dims[i], x->ndim)] = 1;
    if (numel(out) == 0) return AI3_OK;
    if (x->ndim == 0) return copy_one(x, out, "mean", stream); /* the mean of one element */
    return launched(ai3_cuda_mean(x->dtype, x->data, out->data, x->ndim, x->shape, reduce,
                                  stream),
                    "mean");
}

static ai3_status permute(const ai3_plan *plan, const ai3_tensor *x, ai3_tensor *out,
                          cudaStream_t stream) {
    int perm[AI3_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) perm[d] = axis(plan->params.permute.perm[d], x->ndim);
    if (numel(x) == 0) return AI3_OK;
    if (x->ndim == 0) return copy_one(x, out, "permute", stream);
    return launched(ai3_cuda_permute(x->dtype, x->data, out->data, x->ndim, x->shape, perm,
                                     stream),
                    "permute");
}

static ai3_status softmax(const ai3_plan *plan, const ai3_tensor *x, ai3_tensor *out,
                          cudaStream_t stream) {
    int nd = x->ndim, dim = nd ? axis(plan->params.softmax.dim, nd) : 0;
    int64_t outer = 1, inner = 1, n = nd ? x->shape[dim] : 1;
    for (int d = 0; d < dim; d++) outer *= x->shape[d];
    for (int d = dim + 1; d < nd; d++) inner *= x->shape[d];
    return launched(ai3_cuda_softmax(x->dtype, x->data, out->data, outer, n, inner, stream),
                    "softmax");
}

ai3_status ai3_cuda_layernorm_run(const ai3_plan *plan, const ai3_tensor *x, ai3_tensor *out,
                                  bool channels, cudaStream_t stream) {
    const ai3_layernorm_params *p = &plan->params.layernorm;
    const ai3_tensor *w = plan->weights[0].data ? &plan->weights[0] : NULL;
    const ai3_tensor *b = plan->weights[1].data ? &plan->weights[1] : NULL;
    if (p->normalized_ndim < 1 || p->normalized_ndim > x->ndim || !(p->eps > 0))
        return ai3_cuda_error(AI3_ERROR_INVALID_ARGUMENT,
                              "layernorm: normalized_ndim must be 1 to the input's %d "
                              "dimensions and eps positive", x->ndim);
    if (channels && (x->ndim != 4 || p->normalized_ndim != 1))
        return ai3_cuda_error(AI3_ERROR_INTERNAL, "layernorm over channels: needs a 4-d input "
                                                  "normalised over one dimension");
    int64_t cols = channels ? x->shape[1] : 1;
    for (int d = x->ndim - p->normalized_ndim; !channels && d < x->ndim; d++) cols *= x->shape[d];
    const ai3_tensor *affine[2] = {w, b};
    for (int k = 0; k < 2; k++)
        if (affine[k] && (numel(affine[k]) != cols || affine[k]->dtype != x->dtype))
            return ai3_cuda_error(AI3_ERROR_INVALID_ARGUMENT,
                                  "layernorm: weight and bias must have the normalized "
                                  "shape's %lld elements and the input's dtype",
                                  (long long)cols);
    int64_t rows = cols ? numel(x) / cols : 0;
    if (rows == 0 || cols == 0) return AI3_OK;
    if (channels)
        return launched(ai3_cuda_layernorm_channels(x->dtype, x->data, w ? w->data : NULL,
                                                    b ? b->data : NULL, p->eps, out->data,
                                                    x->shape[0], cols, rows / x->shape[0],
                                                    stream),
                        "layernorm");
    return launched(ai3_cuda_layernorm(x->dtype, x->data, w ? w->data : NULL,
                                       b ? b->data : NULL, p->eps, out->data, rows, cols,
                                       stream),
                    "layernorm");
}

ai3_status ai3_cuda_tensor_op_run(const ai3_plan *plan, int n, const ai3_tensor *const *in,
                                  ai3_tensor *out, cudaStream_t stream) {
    switch (plan->op) {
    case AI3_OP_ADD:
    case AI3_OP_MUL: return binary(plan, in[0], in[1], out, stream);
    case AI3_OP_CAT: return cat(plan, n, in, out, stream);
    case AI3_OP_MEAN: return mean(plan, in[0], out, stream);
    case AI3_OP_PERMUTE: return permute(plan, in[0], out, stream);
    case AI3_OP_SOFTMAX: return softmax(plan, in[0], out, stream);
    default:
        return ai3_cuda_error(AI3_ERROR_INTERNAL, "operation %d is not a tensor operation",
                              (int)plan->op);
    }
}

/* What the graph executor asks of the CUDA backend: device memory, copies,
 * events between streams, and CUDA graphs (capture and replay). */
#include "cuda.h"

static ai3_status on_device(int device, int *previous) {
    return ai3_cuda_enter_device(device, previous, "graph");
}

ai3_status ai3_cuda_alloc(int device, size_t bytes, void **ptr) {
    int previous;
    ai3_status s = on_device(device, &previous);
    *ptr = NULL;
    if (s == AI3_OK && bytes)
        s = ai3_cuda_check(cudaMalloc(ptr, bytes), "graph", "allocating device memory");
    ai3_cuda_leave_device(device, previous);
    return s;
}

void ai3_cuda_release(int device, void *ptr) {
    int previous;
    if (!ptr || on_device(device, &previous) != AI3_OK) return;
    cudaFree(ptr);
    ai3_cuda_leave_device(device, previous);
}

ai3_status ai3_cuda_copy(int device, void *dst, const void *src, size_t bytes, int kind,
                         void *stream) {
    static const enum cudaMemcpyKind kinds[] = {cudaMemcpyHostToDevice, cudaMemcpyDeviceToDevice,
                                                cudaMemcpyDeviceToHost};
    if (!bytes) return AI3_OK;
    int previous;
    ai3_status s = on_device(device, &previous);
    if (s == AI3_OK)
        s = ai3_cuda_check(stream ? cudaMemcpyAsync(dst, src, bytes, kinds[kind], stream)
                                  : cudaMemcpy(dst, src, bytes, kinds[kind]),
                           "graph", "copying");
    ai3_cuda_leave_device(device, previous);
    return s;
}

ai3_status ai3_cuda_copy_rows(int device, void *dst, size_t dst_pitch, const void *src,
                              size_t src_pitch, size_t width, size_t rows, void *stream) {
    if (!width || !rows) return AI3_OK;
    int previous;
    ai3_status s = on_device(device, &previous);
    if (s == AI3_OK)
        s = ai3_cuda_check(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows,
                                             cudaMemcpyDeviceToDevice, stream),
                           "graph", "copying rows");
    ai3_cuda_leave_device(device, previous);
    return s;
}

ai3_status ai3_cuda_record(int device, void **event, void *stream) {
    int previous;
    ai3_status s = on_device(device, &previous);
    if (s == AI3_OK && !*event)
        s = ai3_cuda_check(cudaEventCreateWithFlags((cudaEvent_t *)event, cudaEventDisableTiming),
                           "graph", "creating an event");
    if (s == AI3_OK)
        s = ai3_cuda_check(cudaEventRecord(*event, stream), "graph", "recording an event");
    ai3_cuda_leave_device(device, previous);
    return s;
}

ai3_status ai3_cuda_wait(int device, void *event, void *stream) {
    if (!event) return AI3_OK;
    int previous;
    ai3_status s = on_device(device, &previous);
    if (s == AI3_OK)
        s = ai3_cuda_check(cudaStreamWaitEvent(stream, event, 0), "graph", "waiting for an event");
    ai3_cuda_leave_device(device, previous);
    return s;
}

void ai3_cuda_event_destroy(void *event) {
    if (event) cudaEventDestroy(event);
}

ai3_status ai3_cuda_capture_begin(int device, void **stream) {
    int previous;
    *stream = NULL;
    ai3_status s = on_device(device, &previous);
    if (s == AI3_OK)
        s = ai3_cuda_check(cudaStreamCreateWithFlags((cudaStream_t *)stream,
                                                     cudaStreamNonBlocking),
                           "graph", "creating the capture stream");
    if (s == AI3_OK)
        s = ai3_cuda_check(cudaStreamBeginCapture(*stream, cudaStreamCaptureModeThreadLocal),
                           "graph", "starting a CUDA graph capture");
    if (s != AI3_OK && *stream) {
        cudaStreamDestroy(*stream);
        *stream = NULL;
    }
    ai3_cuda_leave_device(device, previous);
    return s;
}

ai3_status ai3_cuda_capture_end(int device, void *stream, void **graph) {
    int previous;
    cudaGraph_t captured = NULL;
    *graph = NULL;
    ai3_status s = on_device(device, &previous);
    if (s == AI3_OK)
        s = ai3_cuda_check(cudaStreamEndCapture(stream, &captured), "graph",
                           "ending the CUDA graph capture");
    if (s == AI3_OK)
        s = ai3_cuda_check(cudaGraphInstantiate((cudaGraphExec_t *)graph, captured, 0), "graph",
                           "instantiating the CUDA graph");
    if (captured) cudaGraphDestroy(captured);
    cudaStreamDestroy(stream);
    ai3_cuda_leave_device(device, previous);
    return s;
}

ai3_status ai3_cuda_replay(int device, void *graph, void *stream) {
    int previous;
    ai3_status s = on_device(device, &previous);
    if (s == AI3_OK)
        s = ai3_cuda_check(cudaGraphLaunch(graph, stream), "graph", "launching the CUDA graph");
    ai3_cuda_leave_device(device, previous);
    return s;
}

void ai3_cuda_graph_destroy(void *graph) {
    if (graph) cudaGraphExecDestroy(graph);
}

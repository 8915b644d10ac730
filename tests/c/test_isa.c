/* The active ISA reaches the multiversioned functions (runtime/
 * multiversion.h): with AI3_ISA as the run was started with, then forced to
 * each ISA the CPU has, the algorithms dispatch to that ISA's variant and to
 * no other, and still compute the right thing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ai3.h"
#include "harness.h"
#include "internal.h"
#include "tensors.h"

/* Runs relu (elementwise), add (broadcasting) and a linear layer (GEMM
 * packing) on the pool and checks their results. */
static void run_algorithms(ai3_isa isa) {
    const char *name = ai3_isa_name(isa);
    int64_t n = 1000;
    ai3_tensor x = test_random(AI3_FLOAT32, 1, &n), y = test_output(AI3_FLOAT32, 1, &n);
    AI3_EXPECT(ai3_relu("default", &x, &y) == AI3_OK, "relu (%s): %s", name, ai3_last_error());
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad += test_get(&y, i) != fmax(test_get(&x, i), 0);
    AI3_EXPECT(bad == 0, "relu (%s): %d wrong elements", name, bad);
    AI3_EXPECT(ai3_add("default", &x, &x, &y) == AI3_OK, "add (%s): %s", name, ai3_last_error());
    bad = 0;
    for (int64_t i = 0; i < n; i++) bad += test_get(&y, i) != 2 * test_get(&x, i);
    AI3_EXPECT(bad == 0, "add (%s): %d wrong elements", name, bad);

    int64_t xs[2] = {40, 64}, ws[2] = {48, 64}, ys[2] = {40, 48};
    ai3_tensor a = test_random(AI3_FLOAT64, 2, xs), w = test_random(AI3_FLOAT64, 2, ws);
    ai3_tensor out = test_output(AI3_FLOAT64, 2, ys);
    AI3_EXPECT(ai3_linear("gemm", &a, &w, NULL, &out) == AI3_OK, "linear (%s): %s", name,
               ai3_last_error());
    double worst = 0;
    for (int64_t i = 0; i < ys[0]; i++)
        for (int64_t j = 0; j < ys[1]; j++) {
            double t = 0;
            for (int64_t k = 0; k < xs[1]; k++)
                t += test_get(&a, i * xs[1] + k) * test_get(&w, j * ws[1] + k);
            worst = fmax(worst, fabs(test_get(&out, i * ys[1] + j) - t));
        }
    AI3_EXPECT(worst < 1e-12, "linear (%s): off by %g", name, worst);
    free(x.data);
    free(y.data);
    free(a.data);
    free(w.data);
    free(out.data);
}

/* Dispatches counted while the algorithms run under the active ISA. */
static void expect_dispatches_to(ai3_isa isa) {
    ai3_multiversion_count(true);
    run_algorithms(isa);
    ai3_multiversion_count(false);
    for (int i = AI3_ISA_GENERIC; i <= AI3_ISA_AVX512; i++) {
        int64_t calls = ai3_multiversion_calls(i);
        if (AI3_MV_ENABLED && i == (int)isa)
            AI3_EXPECT(calls > 0, "active ISA %s: its variants never ran", ai3_isa_name(isa));
        else
            AI3_EXPECT(calls == 0, "active ISA %s: %lld calls to %s variants", ai3_isa_name(isa),
                       (long long)calls, ai3_isa_name((ai3_isa)i));
    }
}

AI3_TEST(isa_reaches_multiversioned_algorithms) {
    ai3_isa saved = ai3_cpu_isa();
    int threads = ai3_get_num_threads();
    ai3_set_num_threads(2); /* pool threads dispatch too */
    expect_dispatches_to(saved); /* as AI3_ISA (or the CPU) chose */
    for (int isa = AI3_ISA_GENERIC; isa <= (int)ai3_cpu_best_isa(); isa++) {
        AI3_EXPECT(ai3_cpu_set_isa((ai3_isa)isa) == (ai3_isa)isa, "cannot force %s",
                   ai3_isa_name((ai3_isa)isa));
        expect_dispatches_to((ai3_isa)isa);
    }
    ai3_cpu_set_isa(saved);
    ai3_set_num_threads(threads);
    AI3_EXPECT(ai3_cpu_isa() == saved, "ISA not restored");
}

/* AI3_ISA, read when the active ISA is first needed, names the ISA the
 * process started with: a run under AI3_ISA=generic dispatches generic. */
AI3_TEST(isa_environment_variable) {
    const char *env = getenv("AI3_ISA");
    ai3_isa best = ai3_cpu_best_isa(), want = best;
    for (int i = AI3_ISA_GENERIC; i <= AI3_ISA_AVX512; i++)
        if (env && !strcmp(env, ai3_isa_name((ai3_isa)i))) want = (ai3_isa)AI3_MIN(i, (int)best);
    /* Other tests force ISAs but restore the one they found. */
    AI3_EXPECT(ai3_cpu_isa() == want, "AI3_ISA=%s but the active ISA is %s", env ? env : "",
               ai3_isa_name(ai3_cpu_isa()));
    AI3_EXPECT(ai3_multiversion_isa() == (int)want, "dispatch goes to %s, not %s",
               ai3_isa_name((ai3_isa)ai3_multiversion_isa()), ai3_isa_name(want));
}

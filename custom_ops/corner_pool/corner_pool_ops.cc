// Corner pooling: op registrations and shape functions.
//
//   CornerPool(x; direction)              y = pool_direction(x)
//   CornerPoolGrad(x, dy; direction)      dx (the official CornerNet backward)
//   FusedCornerPool(a, b; corner)         y = top(a) + left(b)      (top_left)
//                                         y = bottom(a) + right(b)  (bottom_right)
//   FusedCornerPoolGrad(a, b, dy; corner) (da, db)
//
// All tensors are rank-4 NHWC [batch, height, width, channels] of one dtype
// (float, half or bfloat16). Semantics: corner_pool.h. Gradients are registered
// in Python (cornernet_tf/ops/compiled.py).
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace cornernet_tf {
namespace {

using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

// `out` = input `index` as a rank-4 shape, or an error that names the op, the
// input and the expected layout.
absl::Status Rank4Input(InferenceContext* c, int index, const char* op,
                        const char* name, ShapeHandle* out) {
  const ShapeHandle s = c->input(index);
  if (c->RankKnown(s) && c->Rank(s) != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": input '", name,
        "' must be a rank-4 NHWC tensor [batch, height, width, channels], got "
        "rank ",
        c->Rank(s), " with shape ", c->DebugString(s)));
  }
  return c->WithRank(s, 4, out);
}

// All inputs `names` must be rank 4 and of one shape; that shape is output 0
// (and output 1 when `outputs` is 2).
absl::Status SameRank4Shapes(InferenceContext* c, const char* op,
                             std::initializer_list<const char*> names,
                             int outputs) {
  ShapeHandle merged;
  int index = 0;
  for (const char* name : names) {
    ShapeHandle s;
    absl::Status status = Rank4Input(c, index, op, name, &s);
    if (!status.ok()) return status;
    if (index == 0) {
      merged = s;
    } else if (!c->Merge(merged, s, &merged).ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          op, ": input '", name, "' has shape ", c->DebugString(s),
          " but input '", *names.begin(), "' has shape ",
          c->DebugString(c->input(0)), "; they must be equal"));
    }
    ++index;
  }
  for (int i = 0; i < outputs; ++i) c->set_output(i, merged);
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("CornerPool")
    .Input("x: T")
    .Output("y: T")
    .Attr("direction: {'top', 'bottom', 'left', 'right'}")
    .Attr("T: {float, half, bfloat16}")
    .SetShapeFn([](InferenceContext* c) {
      return SameRank4Shapes(c, "CornerPool", {"x"}, 1);
    })
    .Doc(R"doc(
Directional corner pooling (CornerNet) of an NHWC tensor.

For direction top, y[h, w] = max x[h:, w]; bottom, max x[:h+1, w];
left, max x[h, w:]; right, max x[h, :w+1].

x: [batch, height, width, channels].
y: same shape and dtype as x.
)doc");

REGISTER_OP("CornerPoolGrad")
    .Input("x: T")
    .Input("dy: T")
    .Output("dx: T")
    .Attr("direction: {'top', 'bottom', 'left', 'right'}")
    .Attr("T: {float, half, bfloat16}")
    .SetShapeFn([](InferenceContext* c) {
      return SameRank4Shapes(c, "CornerPoolGrad", {"x", "dy"}, 1);
    })
    .Doc(R"doc(
Gradient of CornerPool with respect to x (the official CornerNet rule).

Each output's gradient goes wholly to one argmax of its window, tracked from the
far edge and replaced only by a strictly greater value: on ties, the tied
element farthest from the output position.
)doc");

REGISTER_OP("FusedCornerPool")
    .Input("a: T")
    .Input("b: T")
    .Output("y: T")
    .Attr("corner: {'top_left', 'bottom_right'}")
    .Attr("T: {float, half, bfloat16}")
    .SetShapeFn([](InferenceContext* c) {
      return SameRank4Shapes(c, "FusedCornerPool", {"a", "b"}, 1);
    })
    .Doc(R"doc(
The two pools of a CornerNet corner module, summed.

For corner top_left, y = top(a) + left(b); for bottom_right,
y = bottom(a) + right(b).
)doc");

REGISTER_OP("FusedCornerPoolGrad")
    .Input("a: T")
    .Input("b: T")
    .Input("dy: T")
    .Output("da: T")
    .Output("db: T")
    .Attr("corner: {'top_left', 'bottom_right'}")
    .Attr("T: {float, half, bfloat16}")
    .SetShapeFn([](InferenceContext* c) {
      return SameRank4Shapes(c, "FusedCornerPoolGrad", {"a", "b", "dy"}, 2);
    })
    .Doc(R"doc(
Gradients of FusedCornerPool with respect to a and b (official rule per pool).
)doc");

}  // namespace cornernet_tf

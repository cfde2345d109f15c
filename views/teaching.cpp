#include "views/teaching.h"

#include <QSplitter>
#include <QTextBrowser>
#include <QTextDocument>
#include <QVBoxLayout>

namespace hedgelab::views {

const std::vector<TeachingText>& teaching_texts() {
  static const std::vector<TeachingText> texts = {
      {"loss_curves", QObject::tr("Loss curves"),
       QObject::tr(
           "How far the student still is from the teacher, step by step. Stage 1 teaches each layer's "
           "linear attention to reproduce the teacher's attention output (the cosine loss, per layer). "
           "Stage 2 trains the whole student to predict the next token (CE) and to match the teacher's "
           "output distribution (KD). The dashed line is the teacher's held-out perplexity: the floor "
           "the student aims at."),
       QObject::tr(
           "Stage 1 falls fast in the first few hundred steps, then flattens; some layers stay higher "
           "than others (those are the layers to open in the attention view). At the stage boundary the "
           "curves change meaning, not just level. In stage 2 the held-out perplexity should approach "
           "the teacher's line without crossing it; a KD curve that rises while CE falls means the "
           "student is learning the data rather than the teacher.")},
      {"alignment", QObject::tr("Layer alignment"),
       QObject::tr(
           "For every layer, the cosine between the student's attention (or mixer) output and the "
           "teacher's, on a fixed held-out batch. Teacher-forced: the student layer gets exactly the "
           "teacher's input, so this measures that layer alone. Free-running: the student runs on its "
           "own residual stream, so errors of earlier layers add up."),
       QObject::tr(
           "Teacher-forced cosines climb towards 1 during stage 1. Free-running cosines lag behind and "
           "fall with depth: the gap between the two bars is the error the layers below pass on. Stage 2 "
           "trains for the output, so the free-running figures often improve while teacher-forced ones "
           "drift a little.")},
      {"attention", QObject::tr("Attention maps"),
       QObject::tr(
           "One head of one layer on the probe text. Left: the teacher's softmax weights P (row t: how "
           "much token t looks at each earlier token s). Middle: the student's map ā, the Hedgehog "
           "linear attention in stage 1 or the mixer's implied attention in stage 2. Right: P − ā (red: "
           "the teacher attends more; blue: the student does). All three share one colour scale. The "
           "table gives each head's entropy (how spread its attention is) and the row KL between P and "
           "ā; the second tab shows every head at once."),
       QObject::tr(
           "At step 0 the student's map is smooth and blurry: plain linear attention cannot be spiky. "
           "As stage 1 trains, the feature maps sharpen it and the bright cells of P (the previous "
           "token, the first token, matching words) appear in ā too; the difference map fades and the "
           "student's entropy falls towards the teacher's. Heads whose KL stays high are the hard "
           "ones.")},
      {"kernel", QObject::tr("Kernel approximation"),
       QObject::tr(
           "Softmax attention scores a pair by exp(q·k/√P); Hedgehog replaces that by a product of "
           "learned feature maps φ_q(q)ᵀφ_k(k). Left: every pair s ≤ t of the probe as a point, log P "
           "against log ā; points on the diagonal are perfect mimicry. Right: the teacher's raw score "
           "against the log of the feature product. Spearman ρ asks only whether the order agrees: "
           "does the student rank the keys as the teacher does? The heat map shows the learned "
           "weights of the feature map."),
       QObject::tr(
           "At the start the cloud is a flat smear: the untrained map barely separates the pairs. With "
           "training it tilts towards the diagonal and tightens, the logit plot straightens into a "
           "rising line, and ρ climbs towards 1. The weight map turns from noise into structure. A head "
           "whose ρ stays low is not a Hedgehog success even if its loss looks fine.")},
      {"mamba", QObject::tr("Mamba internals"),
       QObject::tr(
           "Stage 2 turns each linear attention into a selective state-space mixer. Δ_t is how much "
           "of token t is written into the state; α_t = exp(Δ_t A) how much of the old state survives "
           "(1: nothing forgotten). The gate scales each output channel. ‖S_t‖ is the size of the "
           "running state, S_T the state after the whole probe. Last tab: the mixer written as an "
           "attention matrix — its implied attention — beside the teacher's map."),
       QObject::tr(
           "The student starts as an exact copy of stage 1: α ≡ 1, Δ ≡ 1, the gate ≡ 1, and the "
           "implied attention equals the Hedgehog map. As stage 2 trains, α drops below 1 on some heads "
           "(they learn to forget, which makes attention local), Δ varies from token to token (that is "
           "the 'selective' part), and the gate spreads out. The implied attention should keep the "
           "teacher's bright cells; watch the state norm: a steady climb means nothing is forgotten. "
           "Stage-1 snapshots have no mixers.")},
      {"inspector", QObject::tr("Inspector"),
       QObject::tr(
           "The whole student at a glance: every layer as a row, every head as a cell, coloured by the "
           "alignment figures — cosine (teacher-forced, free-running), entropy gap (student minus "
           "teacher), row KL and Spearman ρ. Hover a cell for its numbers, click it to open the head. "
           "Below, the knobs: learning rate, loss weights, KD temperature and probe interval, applied "
           "by the run between steps and recorded in the session."),
       QObject::tr(
           "Cells brighten as training goes on; the dark ones are where to look. Raising the learning "
           "rate shows up in the loss curve within a few steps; raising λ_kd pulls the student towards "
           "the teacher's distribution; a higher temperature softens what it is asked to match. Every "
           "change appears as a mark in the session, so a class can see cause and effect.")},
  };
  return texts;
}

namespace {

const TeachingText* find_text(const QString& view) {
  for (const auto& t : teaching_texts())
    if (t.view == view) return &t;
  return nullptr;
}

}  // namespace

QString teaching_html(const QString& view) {
  const TeachingText* t = find_text(view);
  if (!t) return {};
  return QStringLiteral("<h3>%1</h3><p><b>%2</b> %3</p><p><b>%4</b> %5</p>")
      .arg(t->title.toHtmlEscaped(), QObject::tr("What you see.").toHtmlEscaped(), t->look.toHtmlEscaped(),
           QObject::tr("As training moves.").toHtmlEscaped(), t->expect.toHtmlEscaped());
}

QString teaching_plain(const QString& view) {
  const TeachingText* t = find_text(view);
  if (!t) return {};
  return t->title + "\n\n" + QObject::tr("What you see.") + " " + t->look + "\n\n" +
         QObject::tr("As training moves.") + " " + t->expect;
}

const std::vector<ClassStep>& class_plan() {
  static const std::vector<ClassStep> plan = {
      {"loss_curves", 1,
       QObject::tr("Start the demo run. Name the two stages and the teacher's perplexity line; ask what the "
                   "student has to learn before it can predict anything.")},
      {"attention", 2,
       QObject::tr("Step 0, layer 0: the teacher's spiky map beside the blurry linear one. Open the overview "
                   "and let the class pick the head that looks hardest. Scrub to a later step and compare.")},
      {"kernel", 2,
       QObject::tr("Same head: the point cloud against the diagonal. Explain Spearman ρ as 'same ranking of "
                   "keys'. Scrub steps and watch the cloud tilt.")},
      {"alignment", 1, QObject::tr("Teacher-forced versus free-running bars: why errors add up with depth.")},
      {"inspector", 2,
       QObject::tr(
           "The layer × head grid: find the darkest cell and click it. Then change λ_kd or the learning "
           "rate live and watch the loss curve answer within a few steps.")},
      {"mamba", 2,
       QObject::tr(
           "After the stage boundary: α starts at 1 (the copy of stage 1), then some heads learn to "
           "forget. End on the implied attention beside the teacher's map: the same picture, computed "
           "as a recurrence.")},
  };
  return plan;
}

QString class_plan_html() {
  QString html = QStringLiteral("<h3>%1</h3><ol>").arg(QObject::tr("A 10-minute class").toHtmlEscaped());
  int at = 0;
  for (const auto& s : class_plan()) {
    const TeachingText* t = find_text(s.view);
    html += QStringLiteral("<li><b>%1</b> (%2–%3 min): %4</li>")
                .arg((t ? t->title : s.view).toHtmlEscaped())
                .arg(at)
                .arg(at + s.minutes)
                .arg(s.focus.toHtmlEscaped());
    at += s.minutes;
  }
  return html + "</ol>";
}

TeachingPanel::TeachingPanel(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  browser_ = new QTextBrowser(this);
  browser_->setOpenLinks(false);
  layout->addWidget(browser_);
  setMinimumWidth(220);
}

void TeachingPanel::set_view(const QString& view) {
  view_ = view;
  const QString html = teaching_html(view);
  browser_->setHtml(html.isEmpty() ? class_plan_html() : html);
}

QString TeachingPanel::text() const {
  return browser_->document()->toPlainText();
}

QWidget* with_teaching(QWidget* view, const QString& view_id, QWidget* parent) {
  auto* split = new QSplitter(Qt::Horizontal, parent);
  split->addWidget(view);
  auto* panel = new TeachingPanel(split);
  panel->set_view(view_id);
  split->addWidget(panel);
  split->setStretchFactor(0, 4);
  split->setStretchFactor(1, 1);
  split->setCollapsible(1, true);
  return split;
}

}  // namespace hedgelab::views

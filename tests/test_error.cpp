// The error type's contract: one line, "where: what".
#include <QTest>

#include "tests/test_util.h"

class TestError : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void message_names_place_and_problem() {
    hedgelab::Error e("model/config.json: rotary_pct", "expected a number in (0, 1]");
    QCOMPARE(std::string(e.what()),
             std::string("model/config.json: rotary_pct: expected a number in (0, 1]"));
  }
  void macro_catches_wrong_message() {
    HL_EXPECT_ERROR(throw hedgelab::Error("a.json", "bad"), "a.json", "bad");
  }
};

QTEST_APPLESS_MAIN(TestError)
#include "test_error.moc"

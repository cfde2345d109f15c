// A session file opened in the window (finished, stopped, crashed or still being written): its contents
// read into the RunData the views draw, its recipe, and its probe snapshots. Read-only (SWMR read); the UI
// thread reads it — file reads, never tensor work.
#pragma once

#include <QString>
#include <memory>
#include <vector>

#include "app/gui/run_messages.h"
#include "sessions/session_reader.h"
#include "views/run_data.h"

namespace hedgelab::gui {

class SessionDocument {
 public:
  // Throws hedgelab::Error naming the file and what was expected. `progress` (may be empty) is told
  // (done, total) while the snapshots load.
  static std::unique_ptr<SessionDocument> open(const QString& path,
                                               const std::function<void(int, int)>& progress = {});

  const QString& path() const { return path_; }
  QString title() const;
  // finished / stopped / crashed / abandoned / being written, and why.
  QString state_text() const;
  // Whether Resume can continue it: a complete checkpoint of the recorded run exists.
  bool resumable() const { return resumable_; }
  const std::string& run_name() const { return run_; }
  // The recipe it ran, as JSON text.
  const QString& recipe_json() const { return recipe_json_; }
  const views::RunData& data() const { return data_; }
  // The knobs as the run left them: the recipe's values (lr of the last recorded stage), then every "knob"
  // event in order.
  const snapshot::KnobEdit& knobs() const { return knobs_; }
  const sessions::SessionContents& contents() const { return reader_.contents(); }
  std::vector<sessions::Event> events() const { return reader_.events(); }

 private:
  SessionDocument(QString path, sessions::SessionReader reader);
  void load(const std::function<void(int, int)>& progress);

  QString path_;
  sessions::SessionReader reader_;
  views::RunData data_;
  std::string run_;
  QString recipe_json_;
  bool resumable_ = false;
  snapshot::KnobEdit knobs_;
};

}  // namespace hedgelab::gui

// N-API wrapper of a session and its generation. Each native step is a promise backed by
// an async worker that holds a reference to the wrapper, so nothing is freed under it.
#pragma once

#include "runtime/generation.h"
#include "runtime/session.h"

#include <napi.h>

#include <atomic>
#include <memory>

namespace specdec {

class session_wrap : public Napi::ObjectWrap<session_wrap> {
public:
    static Napi::Function init(Napi::Env env);
    static Napi::FunctionReference constructor;

    explicit session_wrap(const Napi::CallbackInfo & info);

    session * get() { return sess.get(); }
    generation * gen() { return generation_.get(); }
    std::atomic<bool> busy { false };

private:
    Napi::Value begin(const Napi::CallbackInfo & info);
    Napi::Value step(const Napi::CallbackInfo & info);
    Napi::Value evaluate(const Napi::CallbackInfo & info);
    Napi::Value tokens(const Napi::CallbackInfo & info);
    Napi::Value truncate(const Napi::CallbackInfo & info);
    Napi::Value abort(const Napi::CallbackInfo & info);
    Napi::Value set_threads(const Napi::CallbackInfo & info);
    Napi::Value calibrate_threads(const Napi::CallbackInfo & info);
    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);

    bool check(Napi::Env env);

    std::unique_ptr<session>    sess;
    std::unique_ptr<generation> generation_;
};

// createSession(model, { contextSize, batchSize, threads }) -> Promise<Session>
Napi::Value create_session(const Napi::CallbackInfo & info);

} // namespace specdec

//! The load test's ceiling: a plain actix-web "hello" route with the same worker count as the
//! gateway, so gateway figures can be read as a fraction of what the HTTP stack alone does on the
//! same machine in the same run. Usage: `hello_ceiling 127.0.0.1:PORT WORKERS`.

use actix_web::{web, App, HttpResponse, HttpServer};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8099".into());
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        HttpServer::new(|| {
            App::new().route(
                "/hello",
                web::get().to(|| async { HttpResponse::Ok().body("hello") }),
            )
        })
        .workers(workers)
        .bind(addr)?
        .run()
        .await
    })
}
